"""The native kernel library: every level against float64 references and the numba
path, decoding bit-identical to the format's own dense matrix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactnn import formats
from compactnn.kernels import backend

pytestmark = pytest.mark.skipif(backend.native() is None and backend._ext is None,
                                reason="native extension not built")


levels = backend.levels  # the native levels this CPU runs (each is tested)


def codebook_matrix(rng: np.random.Generator, m: int, n: int, k: int) -> np.ndarray:
    vals = rng.standard_normal(k).astype(np.float32)
    return vals[rng.integers(0, k, (m, n))] if m * n else np.zeros((m, n), np.float32)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 40), n=st.integers(0, 140),
       k=st.sampled_from([1, 2, 3, 15, 16, 17, 32, 33, 64, 65, 200, 256]),
       b=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_index_map_products_every_level(m, n, k, b, seed):
    rng = np.random.default_rng(seed)
    W = codebook_matrix(rng, m, n, k)
    M = formats.get("index_map").from_dense(W)
    X = rng.standard_normal((b, n)).astype(np.float32)
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    tol = 1e-4 * (1 + np.abs(X).sum(1, keepdims=True) * np.abs(W).max(initial=0))
    for name in levels():
        with backend.use(name):
            assert M.to_dense().tobytes() == W.tobytes(), name
            assert np.all(np.abs(M.rmatmul(X) - ref) <= tol), name
            assert np.all(np.abs(M.matmul(X.T) - ref.T) <= tol.T), name
            if n:
                assert np.all(np.abs(M.matvec(X[0]) - ref[0]) <= tol[0]), name


def test_bias_is_added_in_the_kernel():
    rng = np.random.default_rng(1)
    W = codebook_matrix(rng, 9, 70, 16)
    M = formats.get("index_map").from_dense(W)
    nat = backend._ext
    k = nat.LutMatrix(M.words, M.bits, 9, 70, M.omega)
    X = rng.standard_normal((3, 70)).astype(np.float32)
    bias = rng.standard_normal(9).astype(np.float32)
    Y = np.empty((3, 9), np.float32)
    k.rows(X, Y, 3, bias)
    np.testing.assert_allclose(Y, X @ W.T + bias, rtol=1e-5, atol=1e-5)


def test_kernel_refuses_short_or_mistyped_buffers():
    rng = np.random.default_rng(2)
    W = codebook_matrix(rng, 4, 8, 4)
    M = formats.get("index_map").from_dense(W)
    k = backend._ext.LutMatrix(M.words, M.bits, 4, 8, M.omega)
    with pytest.raises(ValueError, match="at least"):
        k.rows(np.zeros(8, np.float32), np.zeros(8, np.float32), 2, None)
    with pytest.raises(TypeError, match="'f'"):
        k.rows(np.zeros(16, np.float64), np.zeros(8, np.float32), 1, None)
    with pytest.raises(ValueError, match="rows out of range"):
        k.decode_rows(3, 2, np.zeros(16, np.float32))
    with pytest.raises(ValueError, match="codebook size"):
        backend._ext.LutMatrix(M.words, 1, 4, 8, M.omega)


def test_backend_switch_and_description():
    before = backend.backend()
    with backend.use("numba"):
        assert backend.native() is None
        assert backend.backend() == "numba"
    assert backend.backend() == before
    assert "kernels:" in backend.describe()
    with pytest.raises(ValueError, match="unknown kernel path"):
        with backend.use("sse"):
            pass


def test_the_build_under_test_is_the_one_asked_for():
    """``make sanitize`` sets COMPACTNN_REQUIRE_BUILD to its build folder: the kernels
    tested must be that (sanitized) build, not a silently skipped one."""
    import os

    want = os.environ.get("COMPACTNN_REQUIRE_BUILD")
    if not want:
        pytest.skip("no particular build required")
    assert backend._ext is not None, backend.describe()
    assert os.path.abspath(want) in os.path.abspath(backend._ext.__file__)
