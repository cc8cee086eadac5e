"""Lazy safetensors weights (``compactnn.io.shards``): one tensor at a time, and the
compact-file guards on every shard."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from compactnn.io import CompactFileError
from compactnn.io.shards import Shards


def _write(folder, tensors, shards=1):
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, os.path.join(folder, "model.safetensors"))
        return
    wm = {}
    for i in range(shards):
        part = {k: tensors[k] for k in names[i::shards]}
        f = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file(part, os.path.join(folder, f))
        wm.update(dict.fromkeys(part, f))
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {}, "weight_map": wm}, fh)


@pytest.mark.parametrize("shards", [1, 3])
def test_reads_every_tensor(tmp_path, shards):
    t = {f"w{i}": torch.randn(3, i + 1) for i in range(5)}
    t["h"] = torch.randn(4).half()
    _write(tmp_path, t, shards)
    s = Shards(tmp_path)
    assert s.names() == sorted(t)
    for k, v in t.items():
        assert torch.equal(s.get(k), v.float())
        assert s.shape(k) == tuple(v.shape)
    assert s.nbytes() == sum(v.numel() * v.element_size() for v in t.values())


def test_guards(tmp_path):
    with pytest.raises(CompactFileError, match="no model.safetensors"):
        Shards(tmp_path)
    os.mkfifo(tmp_path / "model.safetensors")
    with pytest.raises(CompactFileError, match="FIFO"):
        Shards(tmp_path)
    os.unlink(tmp_path / "model.safetensors")
    save_file({"a": torch.zeros(4)}, tmp_path / "model.safetensors")
    raw = bytearray((tmp_path / "model.safetensors").read_bytes())
    (tmp_path / "model.safetensors").write_bytes(raw[:-4])  # truncated data
    with pytest.raises(CompactFileError, match="offsets"):
        Shards(tmp_path)
    raw[:8] = (10**9).to_bytes(8, "little")
    (tmp_path / "model.safetensors").write_bytes(raw)
    with pytest.raises(CompactFileError, match="header length"):
        Shards(tmp_path)


def test_index_guards(tmp_path):
    save_file({"a": torch.zeros(2)}, tmp_path / "model-00001-of-00001.safetensors")
    idx = tmp_path / "model.safetensors.index.json"
    idx.write_text(json.dumps({"weight_map": {"a": "../evil.safetensors"}}))
    with pytest.raises(CompactFileError, match="weight_map"):
        Shards(tmp_path)
    idx.write_text(json.dumps({"weight_map": {"b": "model-00001-of-00001.safetensors"}}))
    with pytest.raises(CompactFileError, match="'b' is not in"):
        Shards(tmp_path)
    idx.write_text('{"weight_map": {"a": "x", "a": "y"}}')
    with pytest.raises(CompactFileError, match="duplicate"):
        Shards(tmp_path)
