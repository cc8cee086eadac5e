"""Native blockdiag kernel (``BlockDiagMatrix``): products at every level against
float64 references, rows of no block, the constructor's checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactnn import formats
from compactnn.formats.blockdiag import even_split
from compactnn.kernels import backend

pytestmark = pytest.mark.skipif(backend._ext is None, reason="native extension not built")


levels = backend.levels  # the native levels this CPU runs (each is tested)


def check(M, W: np.ndarray, batches=(1, 2, 4, 5, 9)) -> None:
    m, n = W.shape
    rng = np.random.default_rng(m * 31 + n)
    for name in levels():
        with backend.use(name):
            M.__dict__.pop("_kernel", None)
            assert (M._native() is None) == (name == "numba")
            for b in batches:
                X = rng.standard_normal((b, n)).astype(np.float32)
                ref = X.astype(np.float64) @ W.T.astype(np.float64)
                tol = 1e-4 * (1 + np.abs(X).astype(np.float64) @ np.abs(W.T).astype(np.float64))
                assert np.all(np.abs(M.rmatmul(X) - ref) <= tol), (name, b)
                Yt = M.matmul(np.ascontiguousarray(X.T))
                assert np.all(np.abs(Yt - ref.T) <= tol.T), (name, b)
                if b == 1:
                    assert np.all(np.abs(M.matvec(X[0]) - ref[0]) <= tol[0]), name
            if M._native() is not None and m:
                bias = np.arange(m, dtype=np.float32)
                X = rng.standard_normal((3, n)).astype(np.float32)
                Y = np.empty((3, m), np.float32)
                M._native().rows(X, Y, 3, bias)
                ref = X.astype(np.float64) @ W.T.astype(np.float64) + bias
                assert np.allclose(Y, ref, rtol=1e-4, atol=1e-3), name


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 40), n=st.integers(0, 40), blocks=st.integers(1, 6),
       seed=st.integers(0, 2**16), zero_rows=st.booleans())
def test_masked_products_every_level(m, n, blocks, seed, zero_rows):
    """Seeded block layouts (rows and columns permuted), and components found by
    from_dense with rows and columns of no block."""
    rng = np.random.default_rng(seed)
    blocks = min(blocks, max(m, n, 1))
    BD = formats.get("blockdiag")
    size = int(np.dot(np.diff(even_split(m, blocks)), np.diff(even_split(n, blocks))))
    M = BD.seeded(rng.standard_normal(size).astype(np.float32), (m, n), blocks, seed)
    W = M.to_dense()
    if zero_rows and m > 2 and n:
        W[: m // 2] = 0.0
        W[:, :1] = 0.0
        M = BD.from_dense(W)
    check(M, W)


def test_one_dense_block_splits_over_threads():
    W = np.random.default_rng(1).standard_normal((70, 90)).astype(np.float32)
    M = formats.get("blockdiag").from_dense(W)
    assert M.blocks == 1
    with backend.threads(2):
        check(M, W, batches=(1, 3))


def test_constructor_refuses_bad_layouts():
    H = backend._ext.BlockDiagMatrix
    data = np.zeros(4, np.float32)
    rows, cols = np.array([1, 0], np.int64), np.array([0, 1], np.int64)
    ptr = np.array([0, 1, 2], np.int64)
    H(data[:2], rows, cols, ptr, ptr, 2, 2)
    with pytest.raises(ValueError, match="rows is not a permutation"):
        H(data, np.array([1, 1], np.int64), cols, ptr, ptr, 2, 2)
    with pytest.raises(ValueError, match="cols is not a permutation"):
        H(data, rows, np.array([0, 2], np.int64), ptr, ptr, 2, 2)
    with pytest.raises(ValueError, match="bad block pointers"):
        H(data, rows, cols, np.array([0, 2, 1], np.int64), ptr, 2, 2)
    with pytest.raises(ValueError, match="at least 2 items"):
        H(data[:1], rows, cols, ptr, ptr, 2, 2)
    with pytest.raises(TypeError, match="int64"):
        H(data, rows.astype(np.int32), cols, ptr, ptr, 2, 2)
