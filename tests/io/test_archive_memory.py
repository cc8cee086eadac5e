"""Archive decoding stays within 1.5x the decoded matrix in real process memory (RSS).

Each coder decodes a matrix (ANS 4096x4096, adaptive 2048x2048, its largest) in a fresh
process: once to touch every code path and library page, then again with the peak reset
(``/proc/self/clear_refs``); glibc's mmap threshold is fixed so freed buffers leave the
RSS and the second peak is the decode's own chain of buffers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compactnn.coding import archive

SRC = Path(__file__).resolve().parents[2] / "src"

_DECODE = r"""
import sys
import numpy as np
from compactnn.coding import archive

buf = np.load(sys.argv[1])
m = n = int(sys.argv[2])


def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024


warm = archive.decode(buf, (m, n))
del warm
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
start = status("VmRSS")
D = archive.decode(buf, (m, n))
print((status("VmHWM") - start) / D.nbytes)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize(("coder", "m"), [("ans", 4096), ("adaptive", 2048)])
def test_decode_peak_within_one_and_a_half_decoded_sizes(tmp_path, coder, m):
    n = m
    rng = np.random.default_rng(0)
    values = np.linspace(-1, 1, 33).astype(np.float32)
    W = rng.choice(values[values != 0], size=(m, n)).astype(np.float32)
    W[rng.random((m, n)) < 0.9] = 0
    A = archive.encode(W, coder)
    assert archive.Archive(A.buffer).coder == coder
    np.save(tmp_path / "a.npy", A.buffer)
    env = dict(os.environ, PYTHONPATH=str(SRC), MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, "-c", _DECODE, str(tmp_path / "a.npy"), str(m)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) <= 1.5, f"{coder}: peak {float(out.stdout):.2f}x the decoded size"
