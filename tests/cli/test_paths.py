"""CLI path hygiene: output is never the input, an existing target keeps its mode,
the output folder is checked before any work, checkpoints get the compact files'
guards, ``inspect --check``, and one line with exit 130 on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compactnn import zoo
from compactnn.cli import main
from compactnn.io import save
from compactnn.nn import to_compact
from compactnn.zoo.checkpoint import save_checkpoint
from tests.io.helpers import constrain_, reforge

ROOT = Path(__file__).resolve().parents[2]


def one_line(code: int, err: str, match: str, status: int = 2) -> None:
    assert code == status, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("paths")
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=16), 0)
    p = d / "base.safetensors"
    save_checkpoint(model, p, "lenet300", {"in_features": 16})
    return p


def test_convert_refuses_its_input_as_output(ckpt, tmp_path, capsys):
    before = ckpt.read_bytes()
    link = tmp_path / "alias.safetensors"
    os.link(ckpt, link)
    for out in (ckpt, link):
        code = main(["convert", str(ckpt), "--policy", "csr", "-o", str(out)])
        one_line(code, capsys.readouterr().err, "is the input file")
    assert ckpt.read_bytes() == before


def test_existing_target_keeps_its_mode(ckpt, tmp_path, capsys):
    out = tmp_path / "m.cnn"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    assert main(["convert", str(ckpt), "--policy", "csr", "-o", str(out)]) == 0
    capsys.readouterr()
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert out.read_bytes()[:8] != b"old"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".compactnn-tmp")]


def test_missing_output_folder_before_any_work(ckpt, tmp_path, capsys):
    t0 = time.perf_counter()
    code = main(["convert", str(ckpt), "-o", str(tmp_path / "no" / "m.cnn")])
    one_line(code, capsys.readouterr().err, "does not exist")
    print(f"refused in {time.perf_counter() - t0:.3f} s")


def test_checkpoint_zoo_bomb_is_one_line(ckpt, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    bomb = tmp_path / "bomb.safetensors"
    save_file(load_file(str(ckpt)), str(bomb),
              metadata={"model": "lenet300", "model_kwargs": json.dumps({"in_features": 10**9})})
    code = main(["convert", str(bomb), "-o", str(tmp_path / "m.cnn")])
    one_line(code, capsys.readouterr().err, "does not fit model 'lenet300'")
    for meta in ({"model": "lenet300", "model_kwargs": "[" * 600 + "]" * 600},
                 {"model": "lenet300", "model_kwargs": '{"in_features": 1' + "0" * 400 + "}"}):
        save_file(load_file(str(ckpt)), str(bomb), metadata=meta)
        code = main(["convert", str(bomb), "-o", str(tmp_path / "m.cnn")])
        one_line(code, capsys.readouterr().err, "model_kwargs")
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    code = main(["compress", str(fifo), "--recipe", "demo", "-o", str(tmp_path / "c.st")])
    one_line(code, capsys.readouterr().err, "is a FIFO")
    assert not (tmp_path / "m.cnn").exists()


def test_inspect_says_what_it_validated(tmp_path, capsys):
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=16), 0)
    good = tmp_path / "good.cnn"
    save(to_compact(model, "csr", storage="raw"), good, zoo=("lenet300", {"in_features": 16}))
    bad = tmp_path / "bad.cnn"

    def edit(arrays, desc):
        arrays["1.weight.indices"][0] = 200  # a column beyond the 16 the layer has

    bad.write_bytes(reforge(good.read_bytes(), edit))
    assert main(["inspect", str(bad)]) == 0
    assert "--check validates every array" in capsys.readouterr().out
    code = main(["inspect", str(bad), "--check"])
    one_line(code, capsys.readouterr().err, "out of range")
    assert main(["inspect", str(good), "--check"]) == 0
    assert "validated: every array" in capsys.readouterr().out


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory) -> Path:
    """A LeNet-300-100 checkpoint for the 8x8 digits (64 inputs)."""
    p = tmp_path_factory.mktemp("paths64") / "base64.safetensors"
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=64), 0)
    save_checkpoint(model, p, "lenet300", {"in_features": 64})
    return p


def test_model_that_does_not_take_the_dataset_is_one_line(ckpt, tmp_path, capsys):
    code = main(["compress", str(ckpt), "--recipe", "demo", "--dataset", "digits",
                 "-o", str(tmp_path / "c.safetensors")])
    one_line(code, capsys.readouterr().err, "does not take digits's inputs")
    assert not (tmp_path / "c.safetensors").exists()


@pytest.mark.parametrize("delay", [0.4, 1.0, 2.5])
def test_ctrl_c_at_any_moment_is_one_line(digits_ckpt, tmp_path, delay):
    """While importing (torch takes seconds), loading and compressing. (A signal in the
    interpreter's own first milliseconds, before compactnn's first line runs, cannot be
    caught by any Python program; under load that window exceeds 0.05 s.)"""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "compactnn.cli", "compress", str(digits_ckpt), "--recipe", "demo",
         "--dataset", "digits", "-o", str(tmp_path / "c.safetensors")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted" in err, err
    assert not (tmp_path / "c.safetensors").exists()
