"""The model-adapter registry (``compactnn.io.adapters``) and the shapes the MiniLM
adapter declares: a file naming MiniLM that does not fit is refused before
``transformers`` is imported (checked in a fresh process), and the declared table is
exactly what the built model holds (so no valid file is refused by it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from compactnn.io import CompactFileError, adapters, load, save
from compactnn.nn import to_compact
from compactnn.zoo import adapters as zoo_adapters
from tests.io.helpers import constrain_

ROOT = Path(__file__).resolve().parents[2]
TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 24, "vocab_size": 40, "max_position_embeddings": 32}


def tiny_kwargs(values: int | None = None, scaled: bool = False) -> dict:
    from compactnn.zoo.transformer import bundled_hf_config

    return {"hf_config": {**bundled_hf_config(), **TINY}, "max_seq_length": 32,
            "vocab_bytes": 7, "word_embedding_values": values,
            **({"word_embedding_scaled": True} if scaled else {})}


def test_registry_is_keyed_by_description_key():
    assert {"zoo", "hf"} <= set(adapters.keys())
    assert adapters.get("zoo") is zoo_adapters.ZOO and adapters.get("hf") is zoo_adapters.HF
    with pytest.raises(KeyError, match="no model adapter for 'nope'"):
        adapters.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        adapters.register(adapters.Adapter("zoo", zoo_adapters.ZOO.check, zoo_adapters.ZOO.build))


def test_a_registered_adapter_builds_the_model(tmp_path):
    """One new adapter (here a toy ``lenet`` key) is all ``save`` and ``load`` need."""
    from compactnn import zoo

    def check(spec, source):
        if spec != {"in": 16}:
            raise CompactFileError(f"{source}: bad toy entry")

    toy = adapters.Adapter("toy", check, lambda spec, source, limit: zoo.build(
        "lenet300", in_features=spec["in"]))
    adapters.register(toy)
    try:
        torch.manual_seed(0)
        model = to_compact(constrain_(zoo.build("lenet300", in_features=16)), "csr")
        model.toy_spec = {"in": 16}
        path = tmp_path / "toy.cnn"
        save(model, path)
        back = load(path)
        x = torch.randn(2, 16)
        assert torch.equal(back(x), model(x))
        model.toy_spec = {"in": 17}
        with pytest.raises(CompactFileError, match="bad toy entry"):
            save(model, tmp_path / "never.cnn")
    finally:
        del adapters._ADAPTERS["toy"]


@pytest.mark.parametrize("kwargs", [{}, {"word_embedding_values": 16}, "tiny", "tiny-packed",
                                    "tiny-scaled"])
def test_declared_minilm_shapes_are_the_built_model(kwargs):
    from compactnn.io.meta import LargeOnMeta
    from compactnn.zoo.transformer import SentenceEncoder

    if kwargs == "tiny":
        kwargs = tiny_kwargs()
    elif kwargs == "tiny-packed":
        kwargs = tiny_kwargs(5)
    elif kwargs == "tiny-scaled":
        kwargs = tiny_kwargs(5, scaled=True)
    declared = zoo_adapters.minilm_shapes(kwargs)
    with LargeOnMeta():
        model = SentenceEncoder(**kwargs)
    assert declared == {k: tuple(t.shape) for k, t in model.state_dict().items()}


def test_undescribed_variants_are_left_to_the_build():
    cfg = tiny_kwargs()["hf_config"]
    assert zoo_adapters.minilm_shapes({"hf_config": {**cfg, "position_embedding_type":
                                                     "relative_key"}}) is None
    assert zoo_adapters.minilm_shapes({"bogus": 1}) is None
    assert zoo_adapters.minilm_shapes({"max_seq_length": 10**6}) is None


def test_a_valid_minilm_file_loads(tmp_path):
    from compactnn.zoo.transformer import SentenceEncoder, pack_embeddings_

    torch.manual_seed(0)
    enc = SentenceEncoder(**tiny_kwargs())
    with torch.no_grad():
        emb = enc.bert.embeddings.word_embeddings.weight
        emb.copy_(torch.round(emb * 2) / 2)  # few values: packable
    constrain_(enc)
    pack_embeddings_(enc)
    compact = to_compact(enc, "csr")
    path = tmp_path / "tiny.cnn"
    save(compact, path)
    back = load(path)
    ids = torch.tensor([[1, 5, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert torch.equal(back(ids, mask), compact(ids, mask))


def _put(root: nn.Module, path: str, module: nn.Module) -> None:
    *parents, leaf = path.split(".")
    cur = root
    for p in parents:
        if not hasattr(cur, p):
            cur.add_module(p, nn.Module())
        cur = getattr(cur, p)
    cur.add_module(leaf, module)


def _minilm_file(path: Path, layers: dict[str, nn.Module]) -> Path:
    root = nn.Module()
    for name, m in layers.items():
        _put(root, name, m)
    torch.manual_seed(0)
    save(to_compact(constrain_(root, sparsity=0.95), "csr"), path, zoo=("minilm", {}))
    return path


def test_minilm_files_that_do_not_fit_are_refused_before_transformers(tmp_path):
    q = "bert.encoder.layer.0.attention.self.query"
    files = [
        _minilm_file(tmp_path / "lenet.cnn", {"1": nn.Linear(16, 300), "3": nn.Linear(300, 10)}),
        _minilm_file(tmp_path / "shape.cnn", {q: nn.Linear(16, 16)}),
        _minilm_file(tmp_path / "state.cnn", {q: nn.Linear(384, 384)}),
        _minilm_file(tmp_path / "bias.cnn", {q: nn.Linear(384, 384, bias=False)}),
    ]
    assert max(p.stat().st_size for p in files) <= 2**20
    script = (
        "import json, sys\n"
        "from compactnn.io import CompactFileError, load\n"
        "out = []\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        load(p)\n"
        "        out.append('loaded')\n"
        "    except CompactFileError as e:\n"
        "        out.append(str(e))\n"
        "print(json.dumps([out, 'transformers' in sys.modules]))\n")
    run = subprocess.run([sys.executable, "-c", script, *map(str, files)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert run.returncode == 0, run.stderr
    messages, imported = json.loads(run.stdout.strip().splitlines()[-1])
    assert not imported, "transformers was imported before the rejection"
    for p, msg, want in zip(files, messages, [
            "layer '1' does not exist in the model", "file has shape [16, 16]",
            "state tensors do not match the model", "bias absent in the file"], strict=True):
        assert msg.startswith(str(p)) and want in msg and "\n" not in msg, msg
