"""The index-map kernels (csrc/lut.c) through the C ABI alone, with the C test driver
tests/kernels/neon/lut_levels.c: built for this machine with ASan and UBSan (portable,
AVX2, AVX-512) and
cross-built for aarch64 and run under qemu-aarch64 (portable and NEON), each level
against the codes themselves (decoding bit-identical) and a float64 reference.

The aarch64 half needs ``gcc-aarch64-linux-gnu`` and ``qemu-user`` (Debian; ``make
neon`` installs them when run as root) and skips without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "src" / "compactnn" / "kernels" / "csrc"
DRIVER = Path(__file__).parent / "neon" / "lut_levels.c"
SOURCES = [CSRC / "dispatch.c", CSRC / "lut.c", DRIVER]
FLAGS = ["-O2", "-std=c11", "-fopenmp", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
         f"-I{CSRC}"]


def build_and_run(cc: str, out: Path, extra: list[str], runner: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # `make sanitize`'s
    subprocess.run([cc, *FLAGS, *extra, *map(str, SOURCES), "-lm", "-o", str(out)], check=True,
                   capture_output=True, text=True, timeout=300, env=env)
    done = subprocess.run([*runner, str(out)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
def test_lut_levels_on_this_machine(tmp_path):
    # with AddressSanitizer and UBSan: an out-of-bounds read of any level fails the run
    out = build_and_run("gcc", tmp_path / "lut_levels",
                        ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"],
                        [])
    assert out.startswith("ok: ") and " portable" in out


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None
                    or shutil.which("qemu-aarch64") is None,
                    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64 "
                           "(apt-get install gcc-aarch64-linux-gnu qemu-user)")
def test_lut_neon_under_qemu(tmp_path):
    # -static: qemu-aarch64 then needs no aarch64 sysroot; libgomp's dlopen warning is
    # harmless (no offloading), so it is not turned into an error
    out = build_and_run("aarch64-linux-gnu-gcc", tmp_path / "lut_levels_arm64",
                        ["-static", "-Wno-error"], ["qemu-aarch64"])
    assert out.startswith("ok: ") and out.split("levels")[1].split() == ["portable", "neon"]


def test_levels_name_what_this_cpu_runs():
    from compactnn.kernels import backend

    if backend._ext is None:
        assert backend.levels() == []
        return
    lv = backend.levels()
    assert lv[0] == "portable" and backend.BACKENDS[backend._ext.cpu_level()] == lv[-1]
    for name in set(backend.BACKENDS) - set(lv) - {"numba"}:
        with pytest.raises(ValueError, match="not supported by this CPU"):
            with backend.use(name):
                pass
