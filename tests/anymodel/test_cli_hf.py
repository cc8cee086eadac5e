"""``compactnn compress / convert / inspect / eval / bench`` on Hugging Face folders."""

from __future__ import annotations

import pytest
import torch

from compactnn import load
from compactnn.zoo import hf, hf_task
from tests.anymodel.conftest import make_model_dir
from tests.cli_run import run

RECIPE = """\
- {method: prune, p: 50}
- {method: cws, k: 8, calibrate: 8}
- {method: finetune, epochs: 1, lr: 0.0001, batch_size: 8}
"""



@pytest.mark.parametrize("kind", ["gpt2", "vit"])
def test_end_to_end(kind, tmp_path, capsys):
    path, data = make_model_dir(kind, tmp_path / kind)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    dense, compact = tmp_path / "d.cnn", tmp_path / "c.cnn"
    code, out, err = run(capsys, "compress", path, "--recipe", recipe, "--data", data,
                         "-o", dense)
    assert code == 0, err
    code, out, err = run(capsys, "convert", dense, "-o", compact)
    assert code == 0, err
    assert "x smaller than the float32 weights" in out
    code, out, err = run(capsys, "inspect", compact, "--check")
    assert code == 0 and "model: Hugging Face" in out and "every array" in out
    code, out, err = run(capsys, "eval", compact, "--data", data)
    assert code == 0, err
    assert "cosine" in out and ("perplexity" in out) == (kind == "gpt2")
    code, out, err = run(capsys, "bench", compact, "--data", data, "--batch-sizes", "1,2",
                         "--threads", "1")
    assert code == 0, err
    assert "compact" in out and "dense twin" in out
    # the compact file computes what the constrained dense file computes
    a, b = load(dense), load(compact)
    x = hf_task.inputs_for(a, data, 128)
    torch.testing.assert_close(hf_task.TaskView(b)(x), hf_task.TaskView(a)(x),
                               rtol=1e-5, atol=1e-5)


def test_errors_are_one_line(tmp_path, capsys):
    path, data = make_model_dir("gpt2", tmp_path / "g")
    bad = tmp_path / "bad.yaml"
    bad.write_text('- {method: cws, k: 8, layers: ["transformer.wte"]}\n')
    code, _, err = run(capsys, "compress", path, "--recipe", bad, "--data", data,
                       "-o", tmp_path / "x.cnn")
    assert code == 2 and "no Linear/Conv2d layer named 'transformer.wte'" in err
    assert "layers: transformer.h.0.attn.c_attn" in err and err.count("\n") == 1
    good = tmp_path / "r.yaml"
    good.write_text(RECIPE)
    code, _, err = run(capsys, "compress", path, "--recipe", good, "-o", tmp_path / "x.cnn")
    assert code == 2 and "needs --data" in err
    (tmp_path / "g" / "config.json").write_text('{"model_type": "gpt2", "architectures": '
                                                '["GPT2Evil"]}')
    code, _, err = run(capsys, "compress", path, "--recipe", good, "--data", data,
                       "-o", tmp_path / "x.cnn")
    assert code == 2 and "GPT2Evil" in err and "supported:" in err
    assert not (tmp_path / "x.cnn").exists()


def test_convert_folder_directly(tmp_path, capsys):
    path, data = make_model_dir("bert", tmp_path / "b")
    code, out, err = run(capsys, "convert", path, "-o", tmp_path / "b.cnn")
    assert code == 0, err
    back = load(tmp_path / "b.cnn")
    orig = hf.read_dir(path)
    x = hf_task.inputs_for(orig, data, 128)
    torch.testing.assert_close(hf_task.TaskView(back)(x), hf_task.TaskView(orig)(x),
                               rtol=1e-5, atol=1e-5)
    code, out, err = run(capsys, "eval", tmp_path / "b.cnn", "--data", data)
    assert code == 0 and "cosine 1.0000" in out and "top1_agreement 1.0000" in out
