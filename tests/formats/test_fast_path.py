"""The unchecked public fast path (``matvec_into``/``matmul_into``/``rmatmul_into``,
``fused_rows``) gives the checked products' results bit for bit, in every format."""

from __future__ import annotations

import numpy as np
import pytest

from compactnn import formats


@pytest.mark.parametrize("fid", formats.available())
@pytest.mark.parametrize("batch", [1, 3])
def test_fast_path_matches_the_checked_products(fid: str, batch: int) -> None:
    rng = np.random.default_rng(batch)
    W = rng.choice(np.array([0, 0, 0.5, -1.25, 2], np.float32), size=(12, 20))
    M = formats.get(fid).from_dense(W)
    X = rng.standard_normal((20, batch)).astype(np.float32)
    rows = np.ascontiguousarray(X.T)
    y = np.empty(12, np.float32)
    M.matvec_into(np.ascontiguousarray(X[:, 0]), y)
    Y = np.empty((12, batch), np.float32)
    M.matmul_into(X, Y)
    R = np.empty((batch, 12), np.float32)
    M.rmatmul_into(rows, R)
    assert np.array_equal(y, M.matvec(X[:, 0]))
    assert np.array_equal(Y, M.matmul(X))
    assert np.array_equal(R, M.rmatmul(rows))
    kernel = M.fused_rows(batch)
    if kernel is not None:
        bias = rng.standard_normal(12).astype(np.float32)
        F = np.empty((batch, 12), np.float32)
        kernel.rows(rows, F, batch, bias)
        assert np.allclose(F, M.rmatmul(rows) + bias, rtol=1e-5, atol=1e-5)


def test_empty_outputs_call_no_kernel() -> None:
    M = formats.get("csr").from_dense(np.zeros((0, 4), np.float32))
    M.matvec_into(np.ones(4, np.float32), np.empty(0, np.float32))
    M.rmatmul_into(np.ones((2, 4), np.float32), np.empty((2, 0), np.float32))
