"""save/load round trips: zoo and custom models, raw and archive storage, byte-identical
files, atomic writes, and the named errors of a model that does not fit the file."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

import compactnn
from compactnn import zoo
from compactnn.io import CompactFileError, inspect, load, save
from compactnn.nn import CompactConv2d, CompactLinear, layer_records, to_compact
from tests.io.helpers import Net, constrain_, net


def lenet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return constrain_(zoo.build("lenet300", in_features=64), seed, sparsity=0.9)


@pytest.mark.parametrize("storage", ["raw", "archive"])
def test_zoo_model_roundtrip(tmp_path, storage):
    model = lenet()
    cm = to_compact(model, "smallest", storage=storage)
    path = tmp_path / "m.cnn"
    size = save(cm, path, zoo=("lenet300", {"in_features": 64}), metadata={"acc": 0.5})
    assert size == os.path.getsize(path)
    back = load(path)
    x = torch.randn(7, 1, 8, 8)
    assert torch.equal(back(x), cm(x))
    torch.testing.assert_close(back(x), model(x).detach(), rtol=1e-5, atol=1e-5)
    assert [r.storage for r in layer_records(back)] == [storage] * 3
    assert [r.format for r in layer_records(back)] == [r.format for r in layer_records(cm)]
    info = inspect(path)
    assert info.metadata == {"acc": 0.5} and len(info.layers) == 3
    assert sum(li.stored_bytes for li in info.layers) + info.state_bytes + \
        info.header_bytes == info.file_bytes
    assert [li.stored_bytes for li in info.layers] == \
        [r.stored_bytes for r in layer_records(cm)]


def test_custom_model_needs_skeleton(tmp_path):
    model = net()
    cm = to_compact(model, "smallest")
    path = tmp_path / "net.cnn"
    save(cm, path)
    with pytest.raises(CompactFileError, match="custom model .*Net.*pass a skeleton"):
        load(path)
    skeleton = Net()
    back = load(path, model=skeleton)
    assert isinstance(skeleton.conv, nn.Conv2d)  # the skeleton is not modified
    assert isinstance(back.conv, CompactConv2d) and isinstance(back.head[1], CompactLinear)
    x = torch.randn(3, 2, 8, 8)
    assert torch.equal(back(x), cm(x))
    torch.testing.assert_close(back(x), model(x).detach(), rtol=1e-5, atol=1e-5)
    assert torch.equal(back.bn.running_var, model.bn.running_var)


def test_resave_is_byte_identical_and_loaded_skeleton_can_be_compact(tmp_path):
    cm = to_compact(net(), "smallest")
    a, b, c = tmp_path / "a.cnn", tmp_path / "b.cnn", tmp_path / "c.cnn"
    save(cm, a)
    back = load(a, model=Net())
    save(back, b)
    assert a.read_bytes() == b.read_bytes()
    save(load(b, model=back), c)  # a compact skeleton works too
    assert a.read_bytes() == c.read_bytes()


def test_same_inputs_give_identical_bytes(tmp_path):
    paths = [tmp_path / f"{i}.cnn" for i in range(2)]
    for p in paths:  # two independent conversions of the same seeded model
        save(to_compact(lenet(3), "smallest"), p, zoo=("lenet300", {"in_features": 64}),
             metadata={"b": 1, "a": [1.5, "x"]})
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_write_is_atomic(tmp_path, monkeypatch):
    cm = to_compact(net(), "dense")
    path = tmp_path / "m.cnn"
    save(cm, path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save(to_compact(net(1), "csr"), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.cnn"]  # no temporary file left behind


def test_unsupported_dtype_and_metadata(tmp_path):
    cm = to_compact(net(), "dense")
    with pytest.raises(TypeError, match="JSON"):
        save(cm, tmp_path / "x.cnn", metadata={"bad": object()})
    assert not (tmp_path / "x.cnn").exists()


def test_skeleton_mismatches_are_named(tmp_path):
    path = tmp_path / "m.cnn"
    save(to_compact(lenet(), "csr"), path, zoo=("lenet300", {"in_features": 64}))
    with pytest.raises(CompactFileError, match=r"file has shape \[300, 64\], the model"):
        load(path, model=zoo.build("lenet300", in_features=32))
    with pytest.raises(CompactFileError, match="does not exist in the model"):
        load(path, model=nn.Sequential(nn.Flatten()))
    with pytest.raises(CompactFileError, match="not Linear"):
        load(path, model=nn.Sequential(nn.Flatten(), nn.ReLU()))
    no_bias = zoo.build("lenet300", in_features=64)
    no_bias[1] = nn.Linear(64, 300, bias=False)
    with pytest.raises(CompactFileError, match="bias present in the file"):
        load(path, model=no_bias)
    extra = zoo.build("lenet300", in_features=64)
    extra.register_buffer("scale", torch.ones(1))
    with pytest.raises(CompactFileError, match="state tensors do not match"):
        load(path, model=extra)
    conv_path = tmp_path / "c.cnn"
    save(to_compact(net(), "csr"), conv_path)
    other = Net()
    other.conv = nn.Conv2d(2, 4, 3, stride=1, padding=1, groups=2)
    with pytest.raises(CompactFileError, match="file has convolution"):
        load(conv_path, model=other)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CompactFileError, match="no such file"):
        load(tmp_path / "nope.cnn")
    with pytest.raises(CompactFileError, match="is a directory"):
        load(tmp_path)


def test_top_level_exports():
    assert compactnn.save is save and compactnn.load is load
    assert compactnn.to_compact is to_compact


def test_state_with_integer_buffers(tmp_path):
    model = net()
    model.bn.num_batches_tracked += 7
    path = tmp_path / "m.cnn"
    save(to_compact(model, "dense"), path)
    back = load(path, model=Net())
    assert back.bn.num_batches_tracked.item() == 7
    assert back.bn.num_batches_tracked.dtype == torch.int64
    assert np.isfinite(back.bn.running_mean.numpy()).all()


def test_file_parts_are_views_of_the_arrays():
    """``save`` writes the file part by part: the arrays' parts are views of the arrays,
    not copies, and joined they are exactly ``encode_file``'s bytes."""
    from compactnn.io.container import encode_file, file_parts

    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
              "i": np.array([-1, 2, 3], np.int8), "s": np.array(2.5, np.float32)}
    parts = file_parts(arrays, {"note": "x"})
    assert len(parts) == 1 + len(arrays)
    views = [np.frombuffer(p, np.uint8) for p in parts[1:]]
    for arr in arrays.values():
        assert sum(np.shares_memory(v, arr) for v in views) == 1
    assert b"".join(parts) == encode_file(arrays, {"note": "x"})


def test_save_returns_the_size_written(tmp_path):
    m = to_compact(constrain_(net()))
    size = save(m, tmp_path / "m.cnn")
    assert size == (tmp_path / "m.cnn").stat().st_size
    assert save(m, tmp_path / "p.cnn", pack=True) == (tmp_path / "p.cnn").stat().st_size
