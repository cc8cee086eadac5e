"""``--device`` / ``--autocast`` of ``compactnn compress`` and ``train`` (CPU here; the
CUDA run skips without a GPU)."""

from __future__ import annotations

import pytest
import torch

from tests.anymodel.conftest import make_model_dir
from tests.cli_run import run

RECIPE = """\
- {method: prune, p: 50, criterion: sparsegpt, calibrate: 8}
- {method: cws, k: 8, calibrate: 8}
- {method: finetune, epochs: 1, lr: 0.0001, batch_size: 8}
"""



@pytest.fixture
def gpt2(tmp_path):
    path, data = make_model_dir("gpt2", tmp_path / "gpt2")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    return path, data, recipe


def test_cpu_device_gives_the_default_bytes_and_bf16_runs(gpt2, tmp_path, capsys):
    path, data, recipe = gpt2
    files = {}
    for name, extra in (("default", ()), ("cpu", ("--device", "cpu", "--autocast", "none")),
                        ("bf16", ("--device", "cpu", "--autocast", "bf16"))):
        files[name] = tmp_path / f"{name}.cnn"
        torch.manual_seed(0)  # GPT-2's dropout draws from the global generator
        code, _, err = run(capsys, "compress", path, "--recipe", recipe, "--data", data,
                           "-o", files[name], *extra)
        assert code == 0, err
    if not torch.cuda.is_available():  # the default is the best device: the CPU here
        assert files["default"].read_bytes() == files["cpu"].read_bytes()
    code, out, err = run(capsys, "eval", files["bf16"], "--data", data)
    assert code == 0 and "cosine" in out, err


@pytest.mark.parametrize("device, why", [("tpu", "unknown device"),
                                         ("meta", "only cpu and cuda")])
def test_bad_devices_are_one_line_errors(gpt2, tmp_path, capsys, device, why):
    path, data, recipe = gpt2
    out = tmp_path / "x.cnn"
    code, _, err = run(capsys, "compress", path, "--recipe", recipe, "--data", data,
                       "-o", out, "--device", device)
    assert code == 2 and why in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "train", "--model", "lenet300", "--dataset", "digits",
                       "--epochs", "1", "--device", "cuda", "-o", out)
    assert code == 2 and "CUDA is not available" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["none", "bf16", "fp16"])
def test_compress_on_cuda(gpt2, tmp_path, capsys, precision):
    path, data, recipe = gpt2
    dense, compact = tmp_path / "d.cnn", tmp_path / "c.cnn"
    code, _, err = run(capsys, "compress", path, "--recipe", recipe, "--data", data,
                       "-o", dense, "--device", "cuda", "--autocast", precision)
    assert code == 0, err
    code, _, err = run(capsys, "convert", dense, "-o", compact)
    assert code == 0, err


def test_train_on_cpu_with_autocast(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    code, text, err = run(capsys, "train", "--model", "lenet300", "--dataset", "digits",
                          "--epochs", "1", "--device", "cpu", "--autocast", "bf16", "-o", out)
    assert code == 0 and "accuracy" in text, err
