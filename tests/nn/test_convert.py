"""to_compact: policies, per-layer records, storage choice, errors; to_dense."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compactnn import formats
from compactnn.cost import energy_pj
from compactnn.nn import (
    CompactConv2d,
    CompactLinear,
    UnsupportedLayerError,
    layer_records,
    to_compact,
    to_dense,
)
from tests.io.helpers import constrain_


def model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return constrain_(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                                    nn.Linear(4 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 3)),
                      seed, sparsity=0.9)


X = torch.randn(2, 1, 8, 8)


def test_smallest_and_energy_pick_the_minimum():
    m = model()
    for policy in ("smallest", "energy"):
        cm = to_compact(m, policy, storage="raw")
        recs = layer_records(cm)
        assert [r.name for r in recs] == ["0", "3", "5"]
        for r, layer in zip(recs, (cm[0], cm[3], cm[5]), strict=True):
            assert r.bytes == r.candidates[r.format] == r.stored_bytes
            assert set(r.candidates) <= set(formats.available())
            assert r.reason.startswith(policy)
            assert r.energy_pj == pytest.approx(energy_pj(layer.matrices[0].cost()))
            if policy == "smallest":
                assert r.bytes == min(r.candidates.values())
            else:
                W = layer.weight_matrix()
                others = [energy_pj(formats.get(f).from_dense(W).cost()) for f in r.candidates]
                assert r.energy_pj == pytest.approx(min(others))
        torch.testing.assert_close(cm(X), m(X).detach(), rtol=1e-5, atol=1e-5)


def test_fastest_records_times_and_needs_input_for_convolutions():
    m = model()
    with pytest.raises(ValueError, match="needs example_input"):
        to_compact(m, "fastest")
    cm = to_compact(m, "fastest", example_input=X[:1])
    for r in layer_records(cm):
        assert r.times is not None and set(r.times) == set(r.candidates)
        assert r.times[r.format] == min(r.times.values())
    assert "36 columns" in layer_records(cm)[0].reason  # 1 image x 6x6 positions
    lin = to_compact(nn.Sequential(nn.Linear(5, 4)), "fastest", batch_size=3)
    assert "3 columns" in layer_records(lin)[0].reason


def test_fixed_and_per_layer_policies():
    m = model()
    cm = to_compact(m, {"0": "dense", "3": "csr", "5": "energy"})
    assert [r.format for r in layer_records(cm)][:2] == ["dense", "csr"]
    assert layer_records(cm)[2].reason.startswith("energy")
    cm = to_compact(m, "csr")
    assert {r.format for r in layer_records(cm)} == {"csr"}
    assert all(r.reason == "fixed format" for r in layer_records(cm))


def test_storage_modes():
    m = model()
    raw = layer_records(to_compact(m, "smallest", storage="raw"))
    arc = layer_records(to_compact(m, "smallest", storage="archive"))
    auto = layer_records(to_compact(m, "smallest", storage="auto"))
    for r, a, u in zip(raw, arc, auto, strict=True):
        assert r.storage == "raw"
        assert a.storage == "archive" or "no archive" in a.reason
        assert u.stored_bytes in (r.stored_bytes, a.stored_bytes)
        if a.storage == "archive" and a.stored_bytes < r.stored_bytes:
            assert u.storage == "archive"  # fewer bytes and fewer tensors (header entries)
        assert r.format == a.format == u.format and r.bytes == a.bytes
    dense_values = nn.Sequential(nn.Linear(40, 40))  # all values distinct: no archive
    rec = layer_records(to_compact(dense_values, "dense", storage="archive"))[0]
    assert rec.storage == "raw" and "no archive" in rec.reason


def test_entropy_and_records_of_grouped_convolution():
    torch.manual_seed(1)
    m = constrain_(nn.Sequential(nn.Conv2d(4, 6, 3, groups=2, bias=False)), 1)
    cm = to_compact(m, "csr")
    rec = layer_records(cm)[0]
    assert rec.groups == 2 and rec.shape == (3, 18) and rec.weights == 108
    from compactnn.coding import entropy_bits

    assert rec.entropy_bits == pytest.approx(entropy_bits(m[0].weight.detach().numpy()))
    assert isinstance(cm[0], CompactConv2d) and cm[0].bias is None


def test_input_model_untouched_and_inplace():
    m = model()
    cm = to_compact(m, "csr")
    assert isinstance(m[3], nn.Linear) and isinstance(cm[3], CompactLinear)
    same = to_compact(m, "csr", inplace=True)
    assert same is m and isinstance(m[3], CompactLinear)


def test_to_dense_is_bit_identical():
    m = model()
    d = to_dense(to_compact(m, "smallest"))
    for a, b in zip(m.state_dict().values(), d.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert isinstance(d[0], nn.Conv2d) and isinstance(d[5], nn.Linear)


def test_errors():
    m = model()
    with pytest.raises(ValueError, match="unknown policy or format 'tiny'"):
        to_compact(m, "tiny")
    with pytest.raises(ValueError, match="do not exist: 9"):
        to_compact(m, {"9": "csr"})
    with pytest.raises(TypeError, match="policy must be"):
        to_compact(m, 3)
    with pytest.raises(ValueError, match="storage must be"):
        to_compact(m, storage="zip")
    with pytest.raises(ValueError, match="batch_size"):
        to_compact(m, batch_size=0)
    reflect = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(UnsupportedLayerError, match="padding_mode='reflect'"):
        to_compact(reflect)
    with pytest.raises(UnsupportedLayerError, match="torch.float64"):
        to_compact(nn.Sequential(nn.Linear(3, 2)).double())


def test_attention_projection_is_left_alone():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.attn(x, x, x)[0])

    torch.manual_seed(0)
    b = Block().eval()
    cm = to_compact(b, "dense")
    assert isinstance(cm.attn.out_proj, nn.Linear) and isinstance(cm.head, CompactLinear)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(cm(x), b(x).detach(), rtol=1e-5, atol=1e-5)


def test_candidates_restrict_the_choice():
    m = model()
    compact_only = [f for f in formats.available() if f != "dense"]
    cm = to_compact(m, "fastest", example_input=X[:1], candidates=compact_only)
    for r in layer_records(cm):
        assert r.format != "dense" and set(r.candidates) <= set(compact_only)
    cm = to_compact(m, "smallest", candidates=["csr"])
    assert {r.format for r in layer_records(cm)} == {"csr"}
    with pytest.raises(ValueError, match="candidates must be registered formats"):
        to_compact(m, candidates=["nope"])
    with pytest.raises(ValueError, match="candidates must be registered formats"):
        to_compact(m, candidates=[])


@pytest.mark.parametrize("policy", ["smallest", "energy"])
def test_only_the_best_candidate_is_kept_while_converting(policy, monkeypatch):
    """``smallest`` / ``energy`` keep the best encoding so far, not every candidate's
    arrays at once; the choice is the one over all candidates (the first on ties)."""
    import gc
    import weakref

    import compactnn.nn.convert as conv

    alive: list[weakref.ref] = []  # the encodings of the layer being converted
    most, count = [0], [0]
    real, real_layer = conv._encode, conv._convert_layer

    def encode(fid, mats, own=None):
        gc.collect()
        most[0] = max(most[0], sum(r() is not None for r in alive))
        out = real(fid, mats, own)
        alive.append(weakref.ref(out[0]))
        count[0] += 1
        return out

    def convert_layer(*args, **kwargs):
        alive.clear()
        return real_layer(*args, **kwargs)

    monkeypatch.setattr(conv, "_encode", encode)
    monkeypatch.setattr(conv, "_convert_layer", convert_layer)
    model = constrain_(nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10)))
    cm = to_compact(model, policy)
    assert count[0] >= 8 and most[0] <= 1  # only the best so far when the next is encoded
    for r in layer_records(cm):
        key = r.candidates if policy == "smallest" else None
        if key is not None:
            assert r.format == min(key, key=key.__getitem__)
