"""Native csr / cer / cser kernels: every level and every index width against float64
references; the kernel objects refuse arrays they cannot run on safely."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactnn import formats
from compactnn.kernels import backend

pytestmark = pytest.mark.skipif(backend._ext is None, reason="native extension not built")

SPARSE = ("csr", "cer", "cser")


levels = backend.levels  # the native levels this CPU runs (each is tested)


def pruned_shared(rng: np.random.Generator, m: int, n: int, k: int, sparsity: float) -> np.ndarray:
    """``k`` shared values, a fraction ``sparsity`` of entries 0 (none: the most
    frequent value is not 0, so cer/cser shift by it)."""
    vals = rng.standard_normal(k).astype(np.float32)
    W = vals[rng.integers(0, k, (m, n))] if m * n else np.zeros((m, n), np.float32)
    W[rng.random((m, n)) < sparsity] = 0.0
    return W


def tolerance(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    return 1e-4 * (1 + np.abs(X).sum(1, keepdims=True) * np.abs(W).max(initial=0))


def assert_products(M, W: np.ndarray, X: np.ndarray, where: str) -> None:
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    tol = tolerance(X, W)
    assert np.all(np.abs(M.rmatmul(X) - ref) <= tol), where
    assert np.all(np.abs(M.matmul(np.ascontiguousarray(X.T)) - ref.T) <= tol.T), where
    if W.shape[1]:
        assert np.all(np.abs(M.matvec(X[0]) - ref[0]) <= tol[0]), where


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 30), n=st.integers(0, 300), k=st.sampled_from([1, 2, 3, 17, 40, 300]),
       sparsity=st.sampled_from([0.0, 0.5, 0.9, 1.0]), b=st.integers(1, 70),
       seed=st.integers(0, 2**16))
def test_products_every_level(m, n, k, sparsity, b, seed):
    rng = np.random.default_rng(seed)
    W = pruned_shared(rng, m, n, k, sparsity)
    X = rng.standard_normal((b, n)).astype(np.float32)
    for fid in SPARSE:
        M = formats.get(fid).from_dense(W)
        for name in levels():
            with backend.use(name):
                assert_products(M, W, X, f"{fid} {name}")


@pytest.mark.parametrize("fid", SPARSE)
def test_batched_products_on_unaligned_inputs(fid):
    """W @ X multiplies a copy of X with 64-byte aligned rows when its rows are not (b >=
    16): inputs starting 4 bytes past an aligned address, row strides not a multiple of
    16 floats, and an aligned X give the same products."""
    rng = np.random.default_rng(5)
    m, n = 37, 150
    W = pruned_shared(rng, m, n, 9, 0.8)
    M = formats.get(fid).from_dense(W)
    for b in (16, 17, 64):
        base = np.empty(n * b + 32, np.float32)
        start = (-base.ctypes.data % 64) // 4  # floats to the first 64-byte boundary
        aligned = base[start:start + n * b].reshape(n, b)
        shifted = base[start + 1:start + 1 + n * b].reshape(n, b)
        for X in (aligned, shifted):
            X[:] = rng.standard_normal((n, b))
            ref = W.astype(np.float64) @ X.astype(np.float64)
            tol = 1e-4 * (1 + np.abs(W).astype(np.float64) @ np.abs(X).astype(np.float64))
            for name in levels():
                with backend.use(name):
                    assert np.all(np.abs(M.matmul(X) - ref) <= tol), (name, b)


def widened(M, dtypes: dict[str, type]):
    """``M`` rebuilt with its index arrays cast to the given dtypes (as a loaded file
    may store them), through ``from_buffers`` so ``check()`` runs."""
    bufs, attrs = M.to_buffers()
    bufs = {a: (v.astype(dtypes[a]) if a in dtypes else v) for a, v in bufs.items()}
    return type(M).from_buffers(bufs, attrs)


@pytest.mark.parametrize("fid", SPARSE)
@pytest.mark.parametrize("col", [np.uint8, np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("ptr", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_every_index_width(fid, col, ptr):
    rng = np.random.default_rng(3)
    W = pruned_shared(rng, 23, 200, 9, 0.8)
    M = formats.get(fid).from_dense(W)
    if ptr in (np.uint8, np.uint16) and M.nnz > np.iinfo(ptr).max:
        W = W[:, :40].copy()  # few enough entries for narrow pointers
        M = formats.get(fid).from_dense(W)
    names = {"csr": {"indices": col, "indptr": ptr}}.get(
        fid, {"col_idx": col, "omega_ptr": ptr, "row_ptr": ptr, "omega_idx": col})
    M = widened(M, {a: t for a, t in names.items() if a in M.arrays})
    X = rng.standard_normal((5, W.shape[1])).astype(np.float32)
    for name in levels():
        with backend.use(name):
            assert_products(M, W, X, f"{fid} {name}")


@pytest.mark.parametrize("fid", SPARSE)
def test_wide_matrix_uint32_columns(fid):
    """n > 65536: uint32 columns, and batched kernels split the batch into blocks."""
    rng = np.random.default_rng(4)
    W = pruned_shared(rng, 3, 70_000, 5, 0.999)
    M = formats.get(fid).from_dense(W)
    assert (M.indices if fid == "csr" else M.col_idx).dtype == np.uint32
    X = rng.standard_normal((40, W.shape[1])).astype(np.float32)  # column blocks < 40
    for name in levels():
        with backend.use(name):
            assert_products(M, W, X, f"{fid} {name}")


@pytest.mark.parametrize("fid", SPARSE)
def test_results_do_not_depend_on_threads(fid):
    rng = np.random.default_rng(5)
    W = pruned_shared(rng, 300, 800, 16, 0.5)  # enough work for 2 threads at batch 1
    M = formats.get(fid).from_dense(W)
    X = rng.standard_normal((9, 800)).astype(np.float32)
    nat = backend._ext
    try:
        out = []
        for t in (1, 2):
            nat.set_num_threads(t)
            out.append((M.rmatmul(X).tobytes(), M.matvec(X[0]).tobytes()))
    finally:
        nat.set_num_threads(backend._threads or 0)
    assert out[0] == out[1]
    assert_products(M, W, X, fid)  # several chunks of rows in the batched kernels


@pytest.mark.parametrize("fid", SPARSE)
def test_large_batches_run_in_chunks(fid):
    """X @ Wᵀ transposes at most 256 inputs at a time (im2col batches are large)."""
    rng = np.random.default_rng(9)
    W = pruned_shared(rng, 50, 90, 7, 0.7)
    M = formats.get(fid).from_dense(W)
    X = rng.standard_normal((600, 90)).astype(np.float32)
    for name in levels():
        with backend.use(name):
            assert_products(M, W, X, f"{fid} {name}")


def kernel(M):
    """The native kernel object of ``M`` (built outside the format class)."""
    m, n = M.shape
    nat = backend._ext
    if M.format_id == "csr":
        return nat.CsrMatrix(M.data, M.indices, M.indptr, m, n)
    idx = M.omega_idx if M.format_id == "cser" else None
    return nat.GroupedMatrix(M.col_idx, M.omega_ptr, M.row_ptr, idx, M._shifted,
                             float(M._omega0), m, n)


@pytest.mark.parametrize("fid", SPARSE)
def test_bias_is_added_in_the_kernel(fid):
    rng = np.random.default_rng(6)
    W = pruned_shared(rng, 11, 50, 6, 0.0 if fid != "csr" else 0.6)
    M = formats.get(fid).from_dense(W)
    k = kernel(M)
    bias = rng.standard_normal(11).astype(np.float32)
    for B in (1, 4):
        X = rng.standard_normal((B, 50)).astype(np.float32)
        Y = np.empty((B, 11), np.float32)
        k.rows(X, Y, B, bias)
        np.testing.assert_allclose(Y, X @ W.T + bias, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fid", SPARSE)
def test_kernel_refuses_short_or_mistyped_buffers(fid):
    rng = np.random.default_rng(7)
    M = formats.get(fid).from_dense(pruned_shared(rng, 4, 8, 3, 0.5))
    k = kernel(M)
    with pytest.raises(ValueError, match="at least"):
        k.rows(np.zeros(8, np.float32), np.zeros(8, np.float32), 2, None)
    with pytest.raises(TypeError, match="'f'"):
        k.matmul(np.zeros(16, np.float64), np.zeros(8, np.float32), 2)
    with pytest.raises(ValueError, match="at least"):
        k.matmul(np.zeros(16, np.float32), np.zeros(7, np.float32), 2)


def test_csr_kernel_checks_the_arrays_it_relies_on():
    M = formats.get("csr").from_dense(np.array([[0, 1, 2], [3, 0, 0]], np.float32))
    nat = backend._ext
    d, i, p = M.data, M.indices, M.indptr
    with pytest.raises(ValueError, match="out of range"):
        nat.CsrMatrix(d, np.array([1, 2, 3], np.uint8), p, 2, 3)
    with pytest.raises(ValueError, match="not a pointer array"):
        nat.CsrMatrix(d, i, np.array([0, 3, 2], np.uint8), 2, 3)
    with pytest.raises(ValueError, match="ends at"):
        nat.CsrMatrix(d[:2], i[:2], p, 2, 3)
    with pytest.raises(ValueError, match="indices: expected 3"):
        nat.CsrMatrix(d, i[:2], p, 2, 3)
    with pytest.raises(ValueError, match="indptr: expected 2 entries"):
        nat.CsrMatrix(d, i, p, 1, 3)
    with pytest.raises(TypeError, match="unsigned"):
        nat.CsrMatrix(d, i.astype(np.int32), p, 2, 3)
    with pytest.raises(TypeError, match="'f'"):
        nat.CsrMatrix(d.astype(np.float64), i, p, 2, 3)


def test_grouped_kernel_checks_the_arrays_it_relies_on():
    W = np.array([[0, 1, 2, 2], [0, 0, 0, 1]], np.float32)
    cer, cser = formats.get("cer").from_dense(W), formats.get("cser").from_dense(W)
    nat = backend._ext
    sh = cser._shifted
    with pytest.raises(ValueError, match="row 0 has 2 groups for 2 values"):
        nat.GroupedMatrix(cer.col_idx, cer.omega_ptr, cer.row_ptr, None, sh[:2], 0.0, 2, 4)
    with pytest.raises(ValueError, match="code 2 out of range"):
        nat.GroupedMatrix(cser.col_idx, cser.omega_ptr, cser.row_ptr, cser.omega_idx, sh[:2],
                          0.0, 2, 4)
    with pytest.raises(ValueError, match="omega_idx: expected 3"):
        nat.GroupedMatrix(cser.col_idx, cser.omega_ptr, cser.row_ptr, cser.omega_idx[:2], sh,
                          0.0, 2, 4)
    with pytest.raises(ValueError, match="column 3 out of range"):
        nat.GroupedMatrix(cer.col_idx, cer.omega_ptr, cer.row_ptr, None, sh, 0.0, 2, 3)
    with pytest.raises(ValueError, match="omega_ptr: ends at"):
        nat.GroupedMatrix(cer.col_idx[:3], cer.omega_ptr, cer.row_ptr, None, sh, 0.0, 2, 4)
    with pytest.raises(ValueError, match="row_ptr: not a pointer array"):
        nat.GroupedMatrix(cer.col_idx, cer.omega_ptr, np.array([0, 3, 2], np.uint8), None, sh,
                          0.0, 2, 4)


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("shape", [(0, 5), (7, 0), (9, 33), (40, 300)])
def test_permseq_matvec_every_level(seeded, shape):
    """permseq's batch-1 product runs the csr kernel on shared rows (``dataoff``)."""
    rng = np.random.default_rng(8)
    m, n = shape
    PS = formats.get("permseq")
    if seeded:
        M = PS.seeded(rng.standard_normal((3, n)).astype(np.float32), m, seed=11)
    else:
        M = PS.from_dense(rng.standard_normal((m, n)).astype(np.float32))
    W = M.to_dense()
    x = rng.standard_normal(n).astype(np.float32)
    ref = W.astype(np.float64) @ x
    tol = 1e-4 * (1 + np.abs(x).sum() * np.abs(W).max(initial=0))
    for name in levels():
        with backend.use(name):
            assert np.all(np.abs(M.matvec(x) - ref) <= tol), name
            assert np.all(np.abs(M.rmatmul(x[None]) - ref) <= tol), name
            for b in (3, 16, 17, 40):  # batched: native rows; W @ X native up to 16 columns
                X = rng.standard_normal((b, n)).astype(np.float32)
                R = X.astype(np.float64) @ W.T.astype(np.float64)
                assert np.all(np.abs(M.rmatmul(X) - R) <= tol), (name, b)
                assert np.all(np.abs(M.matmul(np.ascontiguousarray(X.T)) - R.T) <= tol), (name, b)


def test_shared_rows_must_stay_inside_the_values():
    nat = backend._ext
    data = np.arange(6, dtype=np.float32)
    cols = np.array([0, 1, 2, 0, 1, 2], np.uint8)
    ptr = np.array([0, 3, 6], np.uint64)
    k = nat.CsrMatrix(data[:3], cols, ptr, 2, 3, dataoff=np.array([0, 0], np.uint64))
    y = np.empty(2, np.float32)
    k.rows(np.ones(3, np.float32), y, 1, None)
    assert y.tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="reads past"):
        nat.CsrMatrix(data[:3], cols, ptr, 2, 3, dataoff=np.array([0, 1], np.uint64))
    with pytest.raises(ValueError, match="dataoff: expected 2"):
        nat.CsrMatrix(data[:3], cols, ptr, 2, 3, dataoff=np.array([0], np.uint64))


def avx512() -> bool:
    return "avx512" in levels()


@pytest.mark.skipif(not avx512(), reason="the sliced layout is built on AVX-512 CPUs")
@pytest.mark.parametrize("fid", SPARSE)
@pytest.mark.parametrize(("m", "n", "k", "sparsity"), [(16, 32, 30, 0.0), (37, 70, 30, 0.6),
                                                      (100, 257, 5, 0.9), (20, 33, 2, 0.0)])
def test_sliced_layout_matvec(fid, m, n, k, sparsity):
    """At most 32 values: batch 1 runs the sliced kernel (row and column counts not
    multiples of its 16 x 32 tiles, -0.0 entries, bias; several threads:
    test_results_do_not_depend_on_threads)."""
    rng = np.random.default_rng(m * n + k)
    W = pruned_shared(rng, m, n, k, sparsity)
    W[0, 0] = -0.0  # a value of its own (csr: a 32nd)
    W[-1, -1] = 1.5  # and another (cer/cser: not the most frequent one)
    M = formats.get(fid).from_dense(W)
    assert M._native().sliced_steps > 0
    X = rng.standard_normal((3, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    ref = X.astype(np.float64) @ W.T.astype(np.float64) + bias
    tol = tolerance(X, W)
    with backend.use("avx512"):
        for i in range(3):
            y = np.empty(m, np.float32)
            M._native().rows(X[i], y, 1, bias)
            assert np.all(np.abs(y - ref[i]) <= tol[i]), fid


@pytest.mark.skipif(not avx512(), reason="the sliced layout is built on AVX-512 CPUs")
@pytest.mark.parametrize("fid", SPARSE)
def test_sliced_layout_needs_a_codebook_of_32(fid):
    """More than 32 values stored (cer/cser store all but the most frequent one), or
    rows so sparse that padding would dominate: the row kernels."""
    rng = np.random.default_rng(3)
    W = pruned_shared(rng, 64, 64, 34, 0.0)
    assert formats.get(fid).from_dense(W)._native().sliced_steps == 0
    W = np.zeros((64, 4096), np.float32)
    W[np.arange(0, 64, 2), rng.integers(0, 4096, 32)] = 1.0  # one entry in every other row
    assert formats.get(fid).from_dense(W)._native().sliced_steps == 0


@pytest.mark.skipif(not avx512(), reason="the sliced layout is built on AVX-512 CPUs")
@pytest.mark.parametrize("fid", SPARSE)
@pytest.mark.parametrize(("m", "n", "k", "sparsity"), [(37, 70, 30, 0.6), (64, 4096, 8, 0.99),
                                                      (100, 257, 40, 0.5), (50, 300, 3, 0.98)])
def test_cost_counts_the_sliced_steps_the_kernel_built(fid, m, n, k, sparsity):
    """cost(1, "avx512") counts the sliced kernel's steps (kernels/sliced.py mirrors the
    C rule: at most 32 values, padding limit per format), else the row kernel."""
    W = pruned_shared(np.random.default_rng(m + n), m, n, k, sparsity)
    M = formats.get(fid).from_dense(W)
    steps = M._native().sliced_steps
    assert M._sliced_steps() == steps
    c = M.cost(1, "avx512")
    if steps:
        assert c.reads["slots"][0] == 16 * steps and c.mults >= 16 * steps
    else:
        assert "slots" not in c.reads
    assert "slots" not in M.cost(1, "avx2").reads and "slots" not in M.cost(2, "avx512").reads
