"""The context-mixing binary arithmetic coder (``compactnn.coding.adaptive``): exact
round trips of significance maps and value indices, and sizes that follow the
statistics of the data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactnn.coding import adaptive


def roundtrip(sig: np.ndarray, vidx: np.ndarray, K: int, period: int) -> np.ndarray:
    s = adaptive.encode_matrix(sig, vidx, K, period)
    m, n = sig.shape
    sig2, vidx2, read = adaptive.decode_matrix(s, m, n, int(sig.sum()), K, period)
    np.testing.assert_array_equal(sig2, sig.reshape(-1))
    np.testing.assert_array_equal(vidx2, vidx)
    assert read == s.size
    return s


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.floats(0, 1), st.integers(1, 256),
       st.integers(2, 40), st.integers(0, 2**32 - 1))
def test_roundtrip(m, n, density, K, period, seed):
    rng = np.random.default_rng(seed)
    sig = (rng.random((m, n)) < density).astype(np.uint8)
    vidx = rng.integers(0, K, int(sig.sum()))
    roundtrip(sig, vidx, K, period)


def test_sizes_follow_the_statistics():
    rng = np.random.default_rng(0)
    shape = (200, 300)
    sparse = (rng.random(shape) < 0.02).astype(np.uint8)
    dense = (rng.random(shape) < 0.5).astype(np.uint8)
    one = np.zeros(int(sparse.sum()), np.int64)
    s_sparse = roundtrip(sparse, one, 1, 2).size
    s_dense = roundtrip(dense, np.zeros(int(dense.sum()), np.int64), 1, 2).size
    h = -(0.02 * np.log2(0.02) + 0.98 * np.log2(0.98)) * sparse.size / 8
    assert s_sparse < 1.03 * h + 16  # an i.i.d. map: close to its entropy
    assert s_dense < 1.02 * sparse.size / 8 + 16
    skewed = rng.choice(16, one.size, p=np.r_[0.7, np.full(15, 0.02)])
    uniform = rng.integers(0, 16, one.size)
    assert roundtrip(sparse, skewed, 16, 2).size < roundtrip(sparse, uniform, 16, 2).size


def test_all_zero_columns_and_rows_cost_little():
    rng = np.random.default_rng(1)
    sig = (rng.random((300, 400)) < 0.2).astype(np.uint8)
    sig[:, ::2] = 0  # half the columns are empty: the column model learns it
    s = roundtrip(sig, np.zeros(int(sig.sum()), np.int64), 1, 2).size
    h = -(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8)) * sig.size / 2 / 8
    assert s < 1.1 * h


def test_bad_arguments_raise():
    sig = np.ones((2, 2), np.uint8)
    with pytest.raises(ValueError, match="codebook of 300 values"):
        adaptive.encode_matrix(sig, np.zeros(4, np.int64), 300, 2)
    with pytest.raises(ValueError, match="3 value indices for 4"):
        adaptive.encode_matrix(sig, np.zeros(3, np.int64), 1, 2)
    s = adaptive.encode_matrix(sig, np.zeros(4, np.int64), 1, 2)
    with pytest.raises(ValueError, match="significant entries"):
        adaptive.decode_matrix(s, 2, 2, 5, 1, 2)
