"""``--seed`` (Hugging Face distillation's dropout), ``--num-workers`` (data read from
disk) and ``--device`` for the MiniLM kind, on the command line."""

from __future__ import annotations

import pytest
import torch

from tests.anymodel.conftest import make_model_dir
from tests.cli_run import run
from tests.zoo.test_files import write_images

RECIPE = """\
- {method: prune, p: 50}
- {method: cws, k: 8, calibrate: 8}
- {method: finetune, epochs: 2, lr: 0.001, batch_size: 4}
"""



def test_seed_decides_the_distillation_dropout(tmp_path, capsys):
    """GPT-2 trains with dropout 0.1: the same --seed writes the same file whatever the
    global generator's state, another seed another file; the caller's state is kept."""
    path, data = make_model_dir("gpt2", tmp_path / "gpt2")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    files = {}
    for name, seed, noise in (("a", 0, 1), ("b", 0, 2), ("c", 1, 1)):
        files[name] = tmp_path / f"{name}.cnn"
        torch.manual_seed(noise)
        state = torch.get_rng_state()
        code, _, err = run(capsys, "compress", path, "--recipe", recipe, "--data", data,
                           "-o", files[name], "--seed", seed)
        assert code == 0, err
        assert torch.equal(torch.get_rng_state(), state)
    assert files["a"].read_bytes() == files["b"].read_bytes()
    assert files["a"].read_bytes() != files["c"].read_bytes()


def test_bad_seed_is_one_line(tmp_path, capsys):
    path, data = make_model_dir("gpt2", tmp_path / "gpt2")
    code, _, err = run(capsys, "compress", path, "--recipe", "demo", "--data", data,
                       "-o", tmp_path / "x.cnn", "--seed", "-1")
    assert code == 2 and "--seed" in err and err.count("\n") == 1


def test_num_workers_reads_the_same_batches(tmp_path, capsys):
    """train / compress / eval on an image folder with DataLoader workers give the
    bytes and numbers of the in-process run."""
    root = write_images(tmp_path / "imgs", per_class=12)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- {method: prune, p: 50}\n"
                      "- {method: finetune, epochs: 1, batch_size: 8}\n")
    outs = {}
    for workers in (0, 2):
        ck, comp = tmp_path / f"m{workers}.safetensors", tmp_path / f"c{workers}.safetensors"
        code, _, err = run(capsys, "train", "--model", "lenet300", "--data", root, "--epochs",
                           2, "--batch-size", 8, "--num-workers", workers, "-o", ck)
        assert code == 0, err
        code, out, err = run(capsys, "compress", ck, "--recipe", recipe, "--data", root,
                             "--num-workers", workers, "-o", comp)
        assert code == 0, err
        cnn = tmp_path / f"c{workers}.cnn"
        assert run(capsys, "convert", comp, "-o", cnn)[0] == 0
        code, text, err = run(capsys, "eval", cnn, "--data", root, "--num-workers", workers)
        assert code == 0, err
        outs[workers] = (ck.read_bytes(), comp.read_bytes(), out.splitlines()[-2],
                         text.replace(str(cnn), ""))
    assert outs[0] == outs[2]
    code, _, err = run(capsys, "eval", tmp_path / "c0.cnn", "--data", root,
                       "--num-workers", "x")
    assert code == 2 and "--num-workers" in err and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_minilm_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    code, _, err = run(capsys, "compress", "minilm", "--recipe", "minilm", "--device", "cuda",
                       "-o", out)
    assert code == 2 and "CUDA is not available" in err and err.count("\n") == 1
    assert not out.exists()


def test_minilm_compress_runs_on_the_given_device(tmp_path, capsys, monkeypatch):
    """The MiniLM kind hands --device / --autocast to calibration and distillation
    (``compress_``); stopped there, before the long run."""
    import compactnn.transforms as transforms

    seen = {}

    class Stop(Exception):
        pass

    def compress_(model, recipe, data, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(transforms, "compress_", compress_)
    code, _, err = run(capsys, "compress", "minilm", "--recipe", "minilm", "--sentences", 4,
                       "--device", "cpu", "--autocast", "bf16", "-o", tmp_path / "m.st")
    assert code != 0 and "Stop" in err
    assert seen["device"] == "cpu" and seen["autocast"] == "bf16"


def test_unsupported_layer_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    """A ConvNeXt's depthwise convolutions cannot be calibrated: the error names the
    module and what is supported, before the model runs (no teacher outputs, no file)."""
    import numpy as np
    import transformers as tf

    from compactnn.zoo import hf_task

    torch.manual_seed(0)
    cfg = tf.ConvNextConfig(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                            image_size=16, num_labels=3, patch_size=2)
    tf.ConvNextForImageClassification(cfg).save_pretrained(tmp_path / "cnx")
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((4, 3, 16, 16), np.float32))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- {method: cws, k: 8, calibrate: 8}\n")

    def no_work(*a, **k):
        raise AssertionError("the model ran before the recipe was checked")

    monkeypatch.setattr(hf_task, "distillation_data", no_work)
    out = tmp_path / "x.cnn"
    code, _, err = run(capsys, "compress", tmp_path / "cnx", "--recipe", recipe, "--data",
                       data, "-o", out)
    assert code == 2 and err.count("\n") == 1, err
    assert "layer 'convnext.encoder.stages.0.layers.0.dwconv'" in err
    assert "calibration supports Conv2d with groups=1" in err
    assert not out.exists()
