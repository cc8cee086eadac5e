"""lossless_float: bfloat16 detection, sizes on Gaussian weights, tiled products,
attribute validation, choice by ``to_compact`` and a save/load round trip."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from compactnn import formats
from compactnn.formats import FormatError
from compactnn.io import load, save
from compactnn.nn import layer_records, to_compact

from .test_conformance import EPS32, check_products, same_bits

F = formats.get("lossless_float")


def gaussian(shape, seed=0, scale=0.05) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def test_float32_gaussian_is_smaller_and_exact():
    W = gaussian((96, 200))
    M = F.from_dense(W)
    assert M.zero_bits == 0
    assert same_bits(M.to_dense(), W)
    assert W.nbytes / M.nbytes > 1.15  # exponent entropy ~2.7 bits of 8


def test_bfloat16_weights_store_only_their_high_half():
    Wb = torch.from_numpy(gaussian((96, 200), seed=1)).bfloat16()
    W = Wb.float().numpy()
    M = F.from_dense(W)
    assert M.zero_bits >= 16 and M.tail_bits == 8 - M.head_bits
    back = torch.from_numpy(M.to_dense()).bfloat16()
    assert torch.equal(back.view(torch.int16), Wb.view(torch.int16))
    assert 2 * W.size / M.nbytes > 1.4


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=20),
                  elements=st.integers(0, 2**16 - 1)))
def test_any_bfloat16_bit_pattern_round_trips(high):
    bits = high.astype(np.uint32) << np.uint32(16)
    bits[(bits & np.uint32(0x7F800000)) == np.uint32(0x7F800000)] = 0  # NaN/Inf are refused
    W = bits.view(np.float32)
    M = F.from_dense(W)
    assert same_bits(M.to_dense(), W)
    assert same_bits(F.from_buffers(*M.to_buffers()).to_dense(), W)


@pytest.mark.parametrize("shape", [(300, 600), (37, 5000), (8, 3)])
def test_tiled_products_cover_every_tile(shape):
    """3 tiles of 104 rows; 5 tiles of 8 rows, the last one ragged; a single tile."""
    W = gaussian(shape, seed=2)
    M = F.from_dense(W)
    threads = numba.get_num_threads()
    check_products(M, W, np.random.default_rng(3))
    assert numba.get_num_threads() == threads
    for b in (7, 9):  # the native fused kernel's batch, and decoded tiles for torch's GEMM
        X = np.random.default_rng(4).standard_normal((b, shape[1])).astype(np.float32)
        ref = X.astype(np.float64) @ W.T.astype(np.float64)
        bound = 4 * (shape[1] + 2) * EPS32 * (np.abs(X) @ np.abs(W.T).astype(np.float64))
        assert np.all(np.abs(M.rmatmul(X) - ref) <= bound)


@pytest.mark.parametrize("attrs", [{"head_bits": -1}, {"head_bits": "2"}, {"zero_bits": True},
                                   {"head_bits": 12, "zero_bits": 12}])
def test_bad_attributes_are_named(attrs):
    bufs, at = F.from_dense(gaussian((9, 9))).to_buffers()
    with pytest.raises(FormatError, match="head_bits"):
        F.from_buffers(bufs, {**at, **attrs})


def test_smallest_picks_it_for_unquantized_layers(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    cm = to_compact(model, "smallest")
    recs = layer_records(cm)
    assert [r.format for r in recs] == ["lossless_float", "lossless_float"]
    assert all(r.bytes < r.candidates["dense"] for r in recs)
    path = tmp_path / "m.cnn"
    save(cm, path)
    back = load(path, model=model)
    for name in ("0", "2"):
        dense, compact = model.get_submodule(name), back.get_submodule(name)
        assert same_bits(compact.weight_matrix(), dense.weight.detach().numpy())
        assert torch.equal(compact.bias.view(torch.int32), dense.bias.view(torch.int32))
