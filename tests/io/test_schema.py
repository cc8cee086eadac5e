"""The layer-entry schema (``compactnn.io.schema``): one frozen entry class per layer
kind, ``to_json``/``from_json`` round trips, one-line errors naming layer and field,
and the kind registry that ``save``, ``load`` and ``inspect`` all go through."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from compactnn import formats
from compactnn.io import CompactFileError, inspect, load, save
from compactnn.io.kinds.conv2d import Conv2dEntry
from compactnn.io.kinds.linear import LinearEntry
from compactnn.io.schema import Description, LayerEntry, entry_for_module, kinds, register_kind
from compactnn.nn import CompactConv2d, CompactLinear, to_compact
from tests.io.helpers import reforge


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.grouped = nn.Conv2d(4, 4, (3, 1), stride=(2, 1), groups=2, bias=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.grouped(self.conv(x)).flatten(1)[:, :8])


@pytest.fixture(params=["raw", "archive"])
def compact(request) -> nn.Module:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.round(p * 4) / 4)  # few values: archives apply
    return to_compact(net, "csr", storage=request.param)


def test_registry_holds_the_built_in_kinds():
    assert kinds()[:2] == ["linear", "conv2d"]
    assert entry_for_module(CompactLinear.__new__(CompactLinear)) is LinearEntry
    assert entry_for_module(CompactConv2d.__new__(CompactConv2d)) is Conv2dEntry
    assert entry_for_module(nn.Linear(2, 2)) is None
    with pytest.raises(ValueError, match="already registered"):
        @register_kind
        @dataclasses.dataclass(frozen=True)
        class Other(LayerEntry):
            kind = "linear"
            modules = ()


def test_entries_round_trip_and_are_frozen(compact):
    for name, m in compact.named_modules():
        cls = entry_for_module(m)
        if cls is None:
            continue
        attrs = None if m.archives else [
            {k: v for k, v in M.to_buffers()[1].items() if k not in ("format", "version",
                                                                     "shape")}
            for M in m.matrices]
        e = cls.from_module(m, attrs)
        js = e.to_json()
        assert json.loads(json.dumps(js)) == js  # plain JSON
        back = LayerEntry.from_json(name, json.loads(json.dumps(js)), "f")
        assert type(back) is cls and back == e and back.to_json() == js
        with pytest.raises(dataclasses.FrozenInstanceError):
            e.groups = 3  # type: ignore[misc]


def test_save_load_inspect_use_one_schema(tmp_path, compact):
    path = tmp_path / "m.cnn"
    save(compact, path)
    back = load(path, model=Net())
    x = torch.randn(2, 2, 4, 3)
    assert torch.equal(back(x), compact(x))
    info = inspect(path, check=True)
    assert sorted((li.name, li.kind) for li in info.layers) == [
        ("conv", "conv2d"), ("fc", "linear"), ("grouped", "conv2d")]
    assert {li.groups for li in info.layers if li.name == "grouped"} == {2}


GOOD = {"kind": "linear", "format": "csr", "version": 1, "shape": [3, 8], "groups": 1,
        "bias": True, "bytes": 10, "entropy_bits": 1.5, "reason": "r", "storage": "raw",
        "attrs": [{}]}


@pytest.mark.parametrize("edit, match", [
    ({"kind": "lstm"}, "unknown layer kind"),
    ({"extra": 1}, r"unknown field\(s\) \['extra'\]"),
    ({"version": True}, "bad format id or version"),
    ({"shape": [3, True]}, "bad shape or groups"),
    ({"shape": [2**31, 1]}, "too large"),
    ({"groups": 2, "attrs": [{}, {}]}, "a linear layer has one group"),
    ({"bias": 1}, "bad bias flag or storage"),
    ({"entropy_bits": 10**400}, "entropy_bits"),
    ({"entropy_bits": -1}, "entropy_bits"),
    ({"attrs": []}, "one attrs object per group"),
    ({"storage": "archive"}, "archive storage has no attrs"),
    ({"kind": "conv2d"}, "bad convolution geometry"),
    ({"kind": "conv2d", "conv": {"in": 8, "out": 3, "kernel": [1, 1], "stride": [1, 1],
                                 "dilation": [1, 1], "groups": 1, "padding": [0, 0],
                                 "bias": 1}}, "bad convolution geometry"),
    ({"kind": "conv2d", "conv": {"in": 4, "out": 3, "kernel": [1, 1], "stride": [1, 1],
                                 "dilation": [1, 1], "groups": 1, "padding": "same"}},
     r"shape \[3, 8\] does not fit the convolution"),
])
def test_from_json_refuses_with_one_line(edit, match):
    with pytest.raises(CompactFileError, match=match) as info:
        LayerEntry.from_json("a.b", {**GOOD, **edit}, "src.cnn")
    msg = str(info.value)
    assert msg.startswith("src.cnn: layer 'a.b': ") and "\n" not in msg


def test_conv_entry_accepts_its_geometry():
    conv = {"in": 8, "out": 3, "kernel": [1, 1], "stride": [1, 1], "dilation": [1, 1],
            "groups": 1, "padding": "same"}
    e = LayerEntry.from_json("c", {**GOOD, "kind": "conv2d", "conv": conv}, "f")
    assert isinstance(e, Conv2dEntry) and e.dense_shape() == (3, 8, 1, 1)


def test_description_refuses_bad_names_and_state():
    desc = {"compactnn": 1, "model": {"class": "x.Y", "zoo": None}, "layers": {},
            "state": [], "metadata": {}}
    assert Description.from_json(desc, "f").to_json() == desc
    with pytest.raises(CompactFileError, match="invalid layer name"):
        Description.from_json({**desc, "layers": {"../x": GOOD}}, "f")
    with pytest.raises(CompactFileError, match="non-string name"):
        Description.from_json({**desc, "state": [1]}, "f")


def test_load_refuses_an_unknown_entry_field(tmp_path, compact):
    path = tmp_path / "m.cnn"
    save(compact, path)
    bad = tmp_path / "bad.cnn"
    bad.write_bytes(reforge(path.read_bytes(), lambda a, d: d["layers"]["fc"].update(
        colour="red")))
    for fn in (lambda: load(bad, model=Net()), lambda: inspect(bad)):
        with pytest.raises(CompactFileError, match=r"layer 'fc': unknown field\(s\)"):
            fn()


def test_archive_groups_decode_per_group(tmp_path, compact):
    path = tmp_path / "m.cnn"
    save(compact, path)
    back = load(path, model=Net())
    g = back.grouped
    assert len(g.matrices) == 2
    assert np.array_equal(g.matrices[1].to_dense(), compact.grouped.matrices[1].to_dense())


@pytest.mark.parametrize("fid", formats.registered())
def test_every_registered_format_travels_through_a_file(tmp_path, fid):
    """Automatic or not (``packed_codes``, ``compact_blocks``), a format stores a layer."""
    rng = np.random.default_rng(4)
    W = rng.choice(np.array([0, 0, 0, 0.5, -1.25, 2.0], np.float32), size=(7, 12))
    W[:, 5:] = 0  # a block structure for compact_blocks
    bias = torch.from_numpy(rng.standard_normal(7).astype(np.float32))
    model = nn.Sequential(CompactLinear(formats.get(fid).from_dense(W), bias))
    path = tmp_path / "m.cnn"
    save(model, path)
    back = load(path, model=nn.Sequential(nn.Linear(12, 7)))
    assert back[0].matrix == model[0].matrix
    x = torch.randn(3, 12)
    assert torch.equal(back(x), model(x))


def test_packed_codes_out_of_range_is_refused_at_load(tmp_path):
    """Codes 0xFF with fewer values: ``CompactFileError`` at load, never an
    ``IndexError`` at the first forward pass."""
    W = np.array([[0.5, 0, -1, 0.5, 0, 0, 0.5, 0, -1]], np.float32).repeat(3, 0)
    model = nn.Sequential(CompactLinear(formats.get("packed_codes").from_dense(W)))
    path = tmp_path / "m.cnn"
    save(model, path)
    bad = tmp_path / "bad.cnn"
    bad.write_bytes(reforge(path.read_bytes(), lambda a, d: a["0.weight.codes"].fill(0xFF)))
    with pytest.raises(CompactFileError, match=r"layer '0': packed_codes: code 3 is out of "
                                               r"range for 3 values"):
        load(bad, model=nn.Sequential(nn.Linear(9, 3, bias=False)))
