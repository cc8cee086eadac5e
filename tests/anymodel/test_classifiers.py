"""Accuracy for Hugging Face sequence / image classifiers, labels from the data
(``label<TAB>text`` lines, an image folder's classes, a ``.npz``'s labels)."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

from compactnn import load
from compactnn.cli import main
from compactnn.zoo import hf, hf_task
from tests.anymodel.conftest import _config, _lines, _tokenizer

RECIPE = "- {method: prune, p: 30}\n- {method: cws, k: 16, calibrate: 8}\n"


def _bert_classifier(path):
    import transformers as tf

    torch.manual_seed(0)
    config, _ = _config("bert")
    config.num_labels = 2
    config.id2label, config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    tf.BertForSequenceClassification(config).eval().save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return path


def _vit_and_folder(tmp_path):
    import transformers as tf

    torch.manual_seed(0)
    config, cls = _config("vit")
    cls(config).eval().save_pretrained(tmp_path / "vit")
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png")
    assert cls is tf.ViTForImageClassification
    return tmp_path / "vit", tmp_path / "imgs"


def _run(capsys, *argv):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _metric(out: str, name: str) -> float:
    return float(re.search(rf"\b{name} ([0-9.]+)%", out).group(1))


def _expected(model, x, labels) -> float:
    with torch.no_grad():
        logits = model(input_ids=x[:, 0], attention_mask=x[:, 1]).logits if x.dim() == 3 \
            else model(pixel_values=x).logits
    return (logits.argmax(-1) == labels).float().mean().item()


def test_text_classifier_accuracy_from_labelled_lines(tmp_path, capsys):
    path = _bert_classifier(tmp_path / "bert")
    lines = _lines(16, 1)
    data = tmp_path / "labelled.txt"
    data.write_text("".join(f"{'pos' if i % 2 else 0}\t{s}\n" for i, s in enumerate(lines)))
    model = hf.read_dir(path)
    assert hf.is_classifier(model)
    x, labels = hf_task.labelled_inputs(model, data)
    assert labels.tolist() == [i % 2 for i in range(16)]
    assert torch.equal(x, hf_task.text_inputs(model, _plain(tmp_path, lines)))
    dense = tmp_path / "d.cnn"
    code, _, err = _run(capsys, "compress", path, "--recipe", _recipe(tmp_path), "--data", data,
                        "-o", dense)
    assert code == 0, err
    code, out, err = _run(capsys, "eval", dense, "--data", data)
    assert code == 0, err
    assert _metric(out, "accuracy") == round(100 * _expected(load(dense), x, labels), 2)
    assert _metric(out, "reference_accuracy") == round(100 * _expected(model, x, labels), 2)
    code, out, _ = _run(capsys, "eval", dense, "--data", _plain(tmp_path, lines))
    assert code == 0 and not re.search(r"\baccuracy \d", out) and "cosine" in out  # agreement


def test_image_classifier_accuracy_from_an_image_folder(tmp_path, capsys):
    path, folder = _vit_and_folder(tmp_path)
    model = hf.read_dir(path)
    x, labels = hf_task.labelled_inputs(model, folder)
    assert x.shape == (9, 3, 16, 16) and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    img = np.asarray(Image.open(folder / "a" / "0.png").convert("RGB").resize(
        (16, 16), Image.Resampling.BILINEAR), np.float32) / 255
    assert torch.allclose(x[0], (torch.from_numpy(img.transpose(2, 0, 1).copy()) - 0.5) / 0.5)
    dense = tmp_path / "d.cnn"
    code, _, err = _run(capsys, "compress", path, "--recipe", _recipe(tmp_path), "--data",
                        folder, "-o", dense)
    assert code == 0, err
    code, out, err = _run(capsys, "eval", dense, "--data", folder)
    assert code == 0, err
    assert _metric(out, "accuracy") == round(100 * _expected(load(dense), x, labels), 2)
    npz = tmp_path / "px.npz"
    np.savez(npz, pixel_values=x.numpy(), labels=np.array([9] * 9))
    code, _, err = _run(capsys, "eval", dense, "--data", npz)
    assert code == 2 and "labels must be in 0..2" in err


def _plain(tmp_path, lines):
    p = tmp_path / "plain.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def _recipe(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE)
    return p
