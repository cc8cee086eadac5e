"""The incremental writer (``compactnn.io.stream``) gives ``save``'s bytes, atomically,
and resumes from its last checkpoint."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from compactnn.io import load, save
from compactnn.io.stream import StreamWriter, data_path, state_path
from compactnn.nn import to_compact

from .helpers import constrain_


def _model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.LayerNorm(8),
                      nn.Linear(8, 4, bias=False))
    return to_compact(constrain_(m))


def _parts(cm: nn.Module) -> list[nn.Module]:
    """Each child alone, at its own path (``"0"``, ``"2"``, ...) in a fresh container."""
    parts = []
    for name, child in cm.named_children():
        p = nn.Module()
        p.add_module(name, child)
        parts.append(p)
    return parts


def test_streamed_file_is_save_bytes(tmp_path):
    cm = _model()
    save(cm, tmp_path / "ref.cnn", metadata={"x": 1})
    w = StreamWriter(tmp_path / "s.cnn")
    for p in reversed(_parts(cm)):  # the order of the parts does not matter
        w.add(p)
    size = w.finish({"class": "torch.nn.modules.container.Sequential", "zoo": None},
                    {"x": 1})
    ref = (tmp_path / "ref.cnn").read_bytes()
    assert (tmp_path / "s.cnn").read_bytes() == ref and size == len(ref)
    assert sorted(os.listdir(tmp_path)) == ["ref.cnn", "s.cnn"]  # no leftovers
    back = load(tmp_path / "s.cnn", model=nn.Sequential(
        nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8), nn.LayerNorm(8),
        nn.Linear(8, 4, bias=False)))
    x = torch.randn(3, 16)
    assert torch.equal(back(x), cm(x))


def test_resume_after_checkpoint_gives_same_bytes(tmp_path):
    cm = _model()
    parts = _parts(cm)
    entry = {"class": "torch.nn.modules.container.Sequential", "zoo": None}
    w = StreamWriter(tmp_path / "a.cnn")
    for p in parts:
        w.add(p)
    w.finish(entry)
    w = StreamWriter(tmp_path / "b.cnn")
    w.add(parts[0])
    w.add(parts[1])
    w.checkpoint({"next": 2})
    w.add(parts[2])  # added after the checkpoint: lost by the "crash" below
    w.close()
    assert not (tmp_path / "b.cnn").exists()  # nothing at the destination before finish
    w = StreamWriter(tmp_path / "b.cnn", resume=True)
    assert w.extra == {"next": 2}
    for p in parts[2:]:
        w.add(p)
    w.finish(entry)
    assert (tmp_path / "b.cnn").read_bytes() == (tmp_path / "a.cnn").read_bytes()
    assert not os.path.exists(state_path(tmp_path / "b.cnn"))
    assert not os.path.exists(data_path(tmp_path / "b.cnn"))


def test_resume_without_state_is_refused(tmp_path):
    from compactnn.io import CompactFileError

    with pytest.raises(CompactFileError, match="nothing to resume"):
        StreamWriter(tmp_path / "x.cnn", resume=True)


def test_duplicate_tensor_and_bad_description_refused(tmp_path):
    cm = _model()
    w = StreamWriter(tmp_path / "x.cnn")
    part = _parts(cm)[0]
    w.add(part)
    with pytest.raises(ValueError, match="used twice"):
        w.add(part)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        w.finish({"class": "x", "zoo": None}, {"bad": object()})
    w.close(remove=True)
    assert os.listdir(tmp_path) == []
