"""The archive storage encoding: bit-exact round trips, size near the entropy bound,
and named errors for inconsistent buffers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from compactnn.coding import entropy_bits
from compactnn.io import archive
from compactnn.io.archive import ArchiveError
from tests.formats.strategies import arbitrary, low_entropy


def roundtrip(W: np.ndarray) -> None:
    A = archive.encode(W)
    if A is None:
        return
    D = archive.decode(A.buffer, W.shape)
    assert D.dtype == np.float32 and D.shape == W.shape
    np.testing.assert_array_equal(D.view(np.uint32), W.view(np.uint32))


@settings(max_examples=60, deadline=None)
@given(low_entropy())
def test_roundtrip_low_entropy(W):
    roundtrip(W)


@settings(max_examples=30, deadline=None)
@given(arbitrary())
def test_roundtrip_arbitrary(W):
    roundtrip(W)


@pytest.mark.parametrize("gap", [0, 1, 2, 3, 4, 7, 8, 2**15 - 1, 2**16, 2**17 + 5, 2**20 - 3])
def test_single_gaps_roundtrip(gap):
    W = np.zeros((1, 2**20 + 2), np.float32)
    W[0, gap] = 1.5
    W[0, -1] = -2.0
    roundtrip(W)


def pruned(seed=0, shape=(300, 784), density=0.04, k=32):
    rng = np.random.default_rng(seed)
    W = np.zeros(shape, np.float32)
    mask = rng.random(shape) < density
    p = 1.0 / np.arange(1, k + 1)
    W[mask] = rng.standard_normal(k).astype(np.float32)[rng.choice(k, mask.sum(), p=p / p.sum())]
    return W


def test_size_is_near_the_entropy_bound():
    W = pruned()
    A = archive.encode(W)
    bound = entropy_bits(W) / 8
    assert A.nbytes < 1.05 * bound  # i.i.d. mask: gap coding reaches the bound + tables


def test_too_many_values_is_not_archived():
    W = np.random.default_rng(1).standard_normal((50, 50)).astype(np.float32)
    assert archive.encode(W) is None


FIELDS = ("version", "nnz", "values", "gap_symbols", "words")


def with_field(buf: np.ndarray, name: str, value: int) -> np.ndarray:
    """The buffer with one header field (uint32) replaced."""
    out = buf.copy()
    i = 4 * FIELDS.index(name)
    out[i:i + 4] = np.array([value], "<u4").view(np.uint8)
    return out


def corrupt(mutate):
    W = pruned(shape=(40, 60), density=0.2, k=8)
    A = archive.encode(W)
    assert A.attrs["nnz"] == np.count_nonzero(W)
    buf, shape = mutate(A.buffer.copy(), A.attrs, W.shape)
    with pytest.raises(ArchiveError, match="archive"):
        archive.decode(buf, shape)


@pytest.mark.parametrize("mutate", [
    lambda b, a, s: (with_field(b, "version", 2), s),
    lambda b, a, s: (with_field(b, "nnz", s[0] * s[1] + 1), s),
    lambda b, a, s: (with_field(b, "nnz", 2**32 - 1), s),
    lambda b, a, s: (with_field(b, "values", 0), s),
    lambda b, a, s: (with_field(b, "gap_symbols", 1000), s),
    lambda b, a, s: (with_field(b, "words", a["words"] + 1), s),
    lambda b, a, s: (b[:-4], s),
    lambda b, a, s: (b[:12], s),
    lambda b, a, s: (b.astype(np.uint16), s),
    lambda b, a, s: (b, (2**20, 2**12)),
    lambda b, a, s: (with_field(b, "nnz", a["nnz"] * 3), s),  # stream ends early / trailing
    lambda b, a, s: (b, (4, 5)),  # positions beyond a smaller matrix
    lambda b, a, s: (np.concatenate([b[:-4], np.zeros(4, np.uint8)]), s),
    lambda b, a, s: (np.concatenate([b[:20], np.full(4, 255, np.uint8), b[24:]]), s),  # NaN
    lambda b, a, s: (np.concatenate([b[:20], np.zeros(4, np.uint8), b[24:]]), s),  # +0.0
], ids=lambda f: "")
def test_inconsistent_archives_raise(mutate):
    corrupt(mutate)
