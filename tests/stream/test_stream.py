"""Streaming compression equals the in-memory pipeline (``compress_`` on the whole
model, ``to_compact``, ``save``) byte for byte, resumes to the same file, and refuses
recipes that span blocks."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import TensorDataset

from compactnn.io import load, save
from compactnn.io.container import decode_file
from compactnn.nn import to_compact
from compactnn.stream import StreamError, compress
from compactnn.transforms import compress_
from compactnn.transforms.recipe import as_recipe

from .conftest import inputs

META = {"run": "test"}
FREE = [{"method": "prune", "p": 50}, {"method": "cws", "k": 8}]
WANDA = [{"method": "prune", "p": 50, "criterion": "wanda", "calibrate": 16}]
GPTQ = [{"method": "cws", "k": 8, "calibrate": 24}]


def in_memory(folder, recipe, x, out) -> bytes:
    """What ``compactnn compress`` + ``convert`` do with the whole model in memory."""
    from compactnn.cli.models.hf import prefixed
    from compactnn.zoo import hf, hf_task

    model = hf.read_dir(folder)
    compress_(hf_task.TaskView(model).eval(), prefixed(as_recipe(recipe)), TensorDataset(x, x))
    save(to_compact(model.eval(), "smallest"), out, metadata=META)
    return out.read_bytes()


@pytest.mark.parametrize("recipe", [FREE, WANDA, GPTQ], ids=["free", "wanda", "gptq"])
def test_stream_equals_in_memory(folder, tmp_path, recipe):
    x = inputs()
    stats = compress(folder, recipe, x, tmp_path / "s.cnn", metadata=META)
    assert [s.name for s in stats][0] == "head" and stats[-1].name == "tail"
    assert (tmp_path / "s.cnn").read_bytes() == in_memory(folder, recipe, x, tmp_path / "r.cnn")
    assert sorted(os.listdir(tmp_path)) == ["r.cnn", "s.cnn"]  # sidecars removed
    model = load(tmp_path / "s.cnn")
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=x[:2, 0]).logits).all()


def test_two_data_aware_steps_agree_on_the_first_block(folder, tmp_path):
    """In memory, step 2 runs after step 1 on *every* layer, so block 1's pruning sees
    block 0 pruned but not yet shared; streaming finishes block 0 (both steps) first.
    Block 0 (and the head) are identical; later blocks differ by that order."""
    recipe = [{"method": "prune", "p": 50, "criterion": "sparsegpt", "calibrate": 40},
              {"method": "cws", "k": 8, "calibrate": 40}]
    x = inputs()
    compress(folder, recipe, x, tmp_path / "s.cnn", metadata=META)
    a, _ = decode_file((tmp_path / "s.cnn").read_bytes())
    b, _ = decode_file(in_memory(folder, recipe, x, tmp_path / "r.cnn"))
    assert set(a) == set(b)
    first = [k for k in a if ".0." in k or not any(f".{i}." in k for i in range(1, 9))]
    first = [k for k in first if not k.startswith("lm_head")]
    assert first and all(a[k].shape == b[k].shape and (a[k] == b[k]).all() for k in first)
    assert any(a[k].shape != b[k].shape or (a[k] != b[k]).any() for k in a if ".1." in k)


def test_resume_gives_the_same_file(folder, tmp_path):
    x = inputs()
    compress(folder, WANDA, x, tmp_path / "a.cnn", metadata=META)
    compress(folder, WANDA, x, tmp_path / "b.cnn", metadata=META, stop_after=3)
    assert not (tmp_path / "b.cnn").exists()
    with pytest.raises(StreamError, match="other arguments"):
        compress(folder, FREE, x, tmp_path / "b.cnn", metadata=META, resume=True)
    stats = compress(folder, WANDA, x, tmp_path / "b.cnn", metadata=META, resume=True)
    assert stats[0].name.endswith(".2")  # head, blocks 0 and 1 were done
    assert (tmp_path / "b.cnn").read_bytes() == (tmp_path / "a.cnn").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a.cnn", "b.cnn"]


@pytest.mark.parametrize("step, why", [
    ({"method": "prune", "p": 50, "scope": "global"}, "global pruning"),
    ({"method": "cws", "k": 4, "shared": True}, "shared codebook"),
    ({"method": "prune", "p": 50, "layers": ["lm_head"]}, "layer lists"),
    ({"method": "finetune", "epochs": 1}, "whole model"),
])
def test_refuses_recipes_spanning_blocks(tmp_path, step, why):
    with pytest.raises(StreamError, match=why):
        compress(tmp_path, [step], inputs(), tmp_path / "x.cnn")
    assert os.listdir(tmp_path) == []
