"""The ``compactnn`` command line: help on every command, one-line errors with exit
status 2 and no partial output, and a tiny end-to-end run on scikit-learn digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from torch import nn

from compactnn import zoo
from compactnn.cli import COMMANDS, main
from tests.cli_run import run


def assert_one_line_error(code, err, match):
    assert code == 2
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert match in err, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet-300-100 trained on digits by `compactnn train`."""
    d = tmp_path_factory.mktemp("cli")
    assert main(["train", "--model", "lenet300", "--dataset", "digits", "--epochs", "4",
                 "-o", str(d / "base.safetensors")]) == 0
    return d


@pytest.fixture(scope="module")
def workdir(trained):
    """The same model compressed and converted (the end-to-end run)."""
    d = trained
    recipe = d / "recipe.yaml"
    recipe.write_text("- {method: prune, p: 60}\n- {method: finetune, epochs: 2, lr: 0.001}\n"
                      "- {method: cws, k: 8, calibrate: 256}\n"
                      "- {method: finetune, epochs: 1, lr: 0.0005}\n")
    steps = [
        ["compress", str(d / "base.safetensors"), "--recipe", str(recipe), "--dataset",
         "digits", "-o", str(d / "small.safetensors")],
        ["convert", str(d / "small.safetensors"), "--policy", "smallest",
         "-o", str(d / "m.cnn")],
    ]
    for argv in steps:
        assert main(argv) == 0, argv
    return d


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_on_every_command(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "usage: compactnn " + command in out


def test_end_to_end_outputs(capsys, workdir):
    code, out, _ = run(capsys, "inspect", str(workdir / "m.cnn"))
    assert code == 0 and "entropy b/w" in out and "total" in out and "dataset" in out
    code, out, _ = run(capsys, "inspect", str(workdir / "m.cnn"), "--json")
    info = json.loads(out)
    assert info["file_bytes"] == os.path.getsize(workdir / "m.cnn")
    code, out, _ = run(capsys, "eval", str(workdir / "m.cnn"))
    assert code == 0 and "accuracy" in out
    acc = float(out.split("accuracy ")[1].split("%")[0])
    assert acc > 50  # a working digits classifier, read back from the compact file
    code, out, _ = run(capsys, "bench", str(workdir / "m.cnn"), "--batch-sizes", "1,8")
    assert code == 0 and "dense float32" in out and "compact" in out
    html = workdir / "r.html"
    code, out, _ = run(capsys, "report", str(workdir / "m.cnn"), "--baseline",
                       str(workdir / "base.safetensors"), "--batch-sizes", "1,8",
                       "--repeats", "3", "-o", str(html))
    assert code == 0
    page = html.read_text()
    assert page.count("<img") == 3 and "baseline (float32)" in page and "entropy bound" in page


def test_convert_with_a_per_layer_policy(capsys, workdir, tmp_path):
    out_file = tmp_path / "fixed.cnn"
    code, out, _ = run(capsys, "convert", str(workdir / "small.safetensors"), "--policy",
                       "1=csr,3=dense", "--storage", "raw", "-o", str(out_file))
    assert code == 0
    code, out, _ = run(capsys, "inspect", str(out_file), "--json")
    formats = [layer["format"] for layer in json.loads(out)["layers"]]
    assert formats[:2] == ["csr", "dense"]
    code, out, _ = run(capsys, "convert", str(workdir / "small.safetensors"), "--formats",
                       "csr,cser", "-o", str(out_file))
    assert code == 0
    code, out, _ = run(capsys, "inspect", str(out_file), "--json")
    assert {layer["format"] for layer in json.loads(out)["layers"]} <= {"csr", "cser"}


def test_missing_and_corrupt_files(capsys, workdir, tmp_path):
    code, _, err = run(capsys, "inspect", str(tmp_path / "nope.cnn"))
    assert_one_line_error(code, err, "no such file")
    bad = tmp_path / "bad.cnn"
    raw = bytearray((workdir / "m.cnn").read_bytes())
    raw[-5] ^= 0xFF
    bad.write_bytes(bytes(raw))
    for cmd in ("inspect", "eval", "bench"):
        code, _, err = run(capsys, cmd, str(bad))
        assert_one_line_error(code, err, "checksum mismatch")
    out_html = tmp_path / "r.html"
    code, _, err = run(capsys, "report", str(bad), "-o", str(out_html))
    assert_one_line_error(code, err, "checksum mismatch")
    assert not out_html.exists()
    code, _, err = run(capsys, "convert", str(tmp_path / "nope.safetensors"), "-o",
                       str(tmp_path / "x.cnn"))
    assert_one_line_error(code, err, "no such checkpoint")
    code, _, err = run(capsys, "convert", str(workdir / "m.cnn"), "-o", str(tmp_path / "x.cnn"))
    assert_one_line_error(code, err, "does not say which zoo model")
    assert not (tmp_path / "x.cnn").exists()


def test_unknown_model_and_missing_dataset(capsys, tmp_path):
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "train", "--model", "resnet999", "--dataset", "digits",
                       "-o", str(out))
    assert_one_line_error(code, err, "unknown model 'resnet999'")
    code, _, err = run(capsys, "train", "--model", "lenet300", "--dataset", "fashion-mnist",
                       "--data", str(tmp_path / "empty"), "-o", str(out))
    assert_one_line_error(code, err, "fashion-mnist not found")
    code, _, err = run(capsys, "train", "--model", "lenet300", "--dataset", "imagenet",
                       "-o", str(out))
    assert_one_line_error(code, err, "unknown dataset")
    assert not out.exists()


@pytest.mark.parametrize("content,suffix,match", [
    ("- {method: sparsify, p: 3}\n", ".yaml", "unknown method"),
    ("- {method: prune, p: 300}\n", ".yaml", "percentage"),
    ("- {method: prune, p: [\n", ".yaml", "not valid YAML"),
    ("[{\"method\": \"cws\"", ".json", "not valid JSON"),
    ("- {method: cws, k: 4, layers: [\"9\"]}\n", ".yml", "no Linear/Conv2d layer named"),
    ("- {method: cws, k: 4, calibrate: 64, damp: 0}\n", ".yaml", "damp must be a positive"),
    (None, ".yaml", "neither a file nor a built-in recipe"),
])
def test_bad_recipes(capsys, trained, tmp_path, content, suffix, match):
    recipe = tmp_path / f"r{suffix}"
    if content is not None:
        recipe.write_text(content)
    out = tmp_path / "c.safetensors"
    code, _, err = run(capsys, "compress", str(trained / "base.safetensors"), "--recipe",
                       str(recipe), "--dataset", "digits", "-o", str(out))
    assert_one_line_error(code, err, match)
    assert not out.exists()


def test_bad_policy_arguments_and_output_folder(capsys, workdir, tmp_path):
    ckpt = str(workdir / "small.safetensors")
    code, _, err = run(capsys, "convert", ckpt, "--policy", "tiniest", "-o",
                       str(tmp_path / "a.cnn"))
    assert_one_line_error(code, err, "unknown policy or format 'tiniest'")
    code, _, err = run(capsys, "convert", ckpt, "--policy", "7=csr", "-o",
                       str(tmp_path / "a.cnn"))
    assert_one_line_error(code, err, "do not exist: 7")
    code, _, err = run(capsys, "convert", ckpt, "-o", str(tmp_path / "no" / "a.cnn"))
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run(capsys, "convert", ckpt)
    assert_one_line_error(code, err, "required: -o/--output")
    code, _, err = run(capsys, "bench", str(workdir / "m.cnn"), "--batch-sizes", "0")
    assert_one_line_error(code, err, "batch sizes must be >= 1")
    code, _, err = run(capsys, "frobnicate")
    assert_one_line_error(code, err, "invalid choice")
    assert os.listdir(tmp_path) == []


def test_unsupported_layer(capsys, tmp_path, monkeypatch):
    def reflectnet(in_features: int = 64, num_classes: int = 10) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"),
                             nn.Flatten(), nn.Linear(2 * in_features, num_classes))

    monkeypatch.setitem(zoo.MODELS, "reflectnet", reflectnet)
    monkeypatch.setattr("compactnn.zoo.presets.model_kwargs",
                        lambda name, data: {"in_features": 64, "num_classes": 10})
    ckpt, out = tmp_path / "r.safetensors", tmp_path / "r.cnn"
    assert main(["train", "--model", "reflectnet", "--dataset", "digits", "--epochs", "1",
                 "-o", str(ckpt)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "convert", str(ckpt), "-o", str(out))
    assert_one_line_error(code, err, "padding_mode='reflect' is not supported")
    assert not out.exists()


def test_custom_model_file_is_refused_by_the_cli(capsys, tmp_path):
    from compactnn import save, to_compact

    path = tmp_path / "custom.cnn"
    save(to_compact(nn.Sequential(nn.Linear(3, 2)), "dense"), path)
    code, _, err = run(capsys, "eval", str(path), "--dataset", "digits")
    assert_one_line_error(code, err, "custom model")


def test_console_entry_point_prints_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "compactnn.cli", "inspect",
                           str(tmp_path / "missing.cnn")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("compactnn inspect: error:")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_regression_model_end_to_end(capsys, tmp_path):
    ckpt, cnn, page = tmp_path / "b.safetensors", tmp_path / "m.cnn", tmp_path / "r.html"
    assert main(["train", "--model", "mlp", "--dataset", "diabetes", "--epochs", "3",
                 "-o", str(ckpt)]) == 0
    assert main(["convert", str(ckpt), "--storage", "raw", "-o", str(cnn)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "eval", str(cnn))
    assert code == 0 and "mse" in out
    code, _, _ = run(capsys, "report", str(cnn), "--repeats", "1", "--batch-sizes", "1,200",
                     "-o", str(page))
    assert code == 0 and "mse vs size" in page.read_text()


def test_convert_packed_is_smaller_and_runs(capsys, workdir, tmp_path):
    out_file = tmp_path / "packed.cnn"
    code, out, _ = run(capsys, "convert", str(workdir / "small.safetensors"), "--pack",
                       "-o", str(out_file))
    assert code == 0 and "total" in out
    assert os.path.getsize(out_file) < os.path.getsize(workdir / "m.cnn")
    code, out, _ = run(capsys, "eval", str(out_file))
    assert code == 0 and "accuracy" in out


def test_a_dataset_the_compact_model_does_not_take(capsys, workdir):
    code, _, err = run(capsys, "eval", str(workdir / "m.cnn"), "--dataset", "diabetes")
    assert_one_line_error(code, err, "does not take diabetes's inputs")
