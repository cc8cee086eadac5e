"""Native Huffman kernels (``HuffMatrix``, ham and sham): decoding bit-identical to the
encoder at every level, products against float64 references, the numba fallback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactnn import formats
from compactnn.coding.huffman import build_code
from compactnn.formats.csr import csr_arrays
from compactnn.kernels import backend

pytestmark = pytest.mark.skipif(backend._ext is None, reason="native extension not built")


levels = backend.levels  # the native levels this CPU runs (each is tested)


def skewed_matrix(rng: np.random.Generator, m: int, n: int, k: int, sparsity: float,
                  skew: float) -> np.ndarray:
    """Values with geometric frequencies (``skew`` > 1 makes codes long) and a share of
    +0.0 entries."""
    vals = rng.standard_normal(k).astype(np.float32)
    p = skew ** -np.arange(k, dtype=np.float64)
    W = vals[rng.choice(k, size=(m, n), p=p / p.sum())] if m * n else np.zeros((m, n), np.float32)
    W[rng.random((m, n)) < sparsity] = 0.0
    return W


def expected_symbols(fid: str, W: np.ndarray) -> np.ndarray:
    data = W if fid == "ham" else csr_arrays(W)[0]
    return build_code(data)[2].astype(np.uint8)


def check_all(M, W: np.ndarray, fid: str, batches=(1, 2, 5, 9, 40)) -> None:
    m, n = W.shape
    rng = np.random.default_rng(m * 1000 + n)
    ref_sym = expected_symbols(fid, W)
    for name in levels():
        with backend.use(name):
            M.__dict__.pop("_kernel", None)
            kern = M._native()
            assert M.to_dense().tobytes() == W.tobytes(), name
            if M.omega.shape[0] > 256:  # the numba kernels run the products
                assert kern is None
            else:
                sym = np.empty(ref_sym.size, np.uint8)
                kern.decode_symbols(0, m, sym)
                assert np.array_equal(sym, ref_sym), name
            if kern is not None and m > 3:  # rows that are not a multiple of the 4-row blocks
                r0, nr = 1, m - 3
                part = np.empty((nr, n), np.float32)
                kern.decode_rows(r0, nr, part)
                assert part.tobytes() == W[r0:r0 + nr].tobytes(), name
            for b in batches:
                X = rng.standard_normal((b, n)).astype(np.float32)
                ref = X.astype(np.float64) @ W.T.astype(np.float64)
                tol = 1e-4 * (1 + np.abs(X).astype(np.float64) @ np.abs(W.T).astype(np.float64))
                assert np.all(np.abs(M.rmatmul(X) - ref) <= tol), (name, b)
                assert np.all(np.abs(M.matmul(X.T) - ref.T) <= tol.T), (name, b)
                if b == 1 and n:
                    assert np.all(np.abs(M.matvec(X[0]) - ref[0]) <= tol[0]), name


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 23), n=st.integers(0, 200), k=st.sampled_from([1, 2, 3, 17, 32, 64, 65,
                                                                       256]),
       sparsity=st.sampled_from([0.0, 0.5, 0.9, 0.99]), skew=st.sampled_from([1.0, 1.6]),
       fid=st.sampled_from(["ham", "sham"]), seed=st.integers(0, 2**16))
def test_products_and_decoding_every_level(m, n, k, sparsity, skew, fid, seed):
    W = skewed_matrix(np.random.default_rng(seed), m, n, k, sparsity, skew)
    check_all(formats.get(fid).from_dense(W), W, fid, batches=(1, 3, 12))


@pytest.mark.parametrize("fid", ["ham", "sham"])
@pytest.mark.parametrize("sparsity", [0.0, 0.6, 0.93])
def test_long_codes_take_the_canonical_search(fid, sparsity):
    """Codes longer than the 11-bit table (escapes) in long rows (the 4-row loops)."""
    n = 700 if sparsity < 0.9 else 5000  # enough stored entries for codes of > 11 bits
    W = skewed_matrix(np.random.default_rng(3), 37, n, 40, sparsity, 1.7)
    M = formats.get(fid).from_dense(W)
    assert M.length_counts.shape[0] > 11
    check_all(M, W, fid)


@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_long_zero_runs_and_rows_of_zeros(fid):
    W = skewed_matrix(np.random.default_rng(4), 21, 1500, 32, 0.995, 1.0)
    W[3] = 0.0
    W[8, :100] = 0.0
    W[8, -1] = 1.5
    M = formats.get(fid).from_dense(W)
    check_all(M, W, fid, batches=(1, 2, 70))


def test_dense_ham_batches_use_tiles_and_stay_exact():
    """ham without the zero-run mode (+0.0 is not the 1-bit code): large batches decode
    tiles for torch's GEMM."""
    W = skewed_matrix(np.random.default_rng(5), 30, 90, 16, 0.0, 1.0)
    M = formats.get("ham").from_dense(W)
    assert not M._zrun and not M._sparse_products
    check_all(M, W, "ham", batches=(1, 8, 9, 33))


def test_more_than_256_values_fall_back_to_numba():
    W = np.random.default_rng(6).standard_normal((8, 80)).astype(np.float32)
    M = formats.get("sham").from_dense(W)
    assert M._native() is None
    x = np.ones(80, np.float32)
    np.testing.assert_allclose(M.matvec(x), W @ x, rtol=1e-5, atol=1e-5)
    assert M.to_dense().tobytes() == W.tobytes()


def test_bias_in_the_rows_kernel():
    W = skewed_matrix(np.random.default_rng(7), 9, 70, 16, 0.8, 1.0)
    M = formats.get("ham").from_dense(W)
    X = np.random.default_rng(8).standard_normal((3, 70)).astype(np.float32)
    bias = np.arange(9, dtype=np.float32)
    Y = np.empty((3, 9), np.float32)
    M._native().rows(X, Y, 3, bias)
    np.testing.assert_allclose(Y, X @ W.T + bias, rtol=1e-5, atol=1e-5)


def test_constructor_refuses_inconsistent_arrays():
    W = skewed_matrix(np.random.default_rng(9), 6, 30, 8, 0.5, 1.0)
    S = formats.get("sham").from_dense(W)
    H = backend._ext.HuffMatrix
    lc = S.length_counts.astype(np.int64)
    rb, rp = S.row_bits.astype(np.int64), S.row_ptr.astype(np.int64)
    cols = S.col_idx.astype(np.uint16)
    with pytest.raises(ValueError, match="length_counts do not match"):
        H(S.words, rb, lc[:-1], S.omega, 6, 30, False, cols, rp)
    with pytest.raises(ValueError, match="at least"):
        H(S.words[:1], rb, lc, S.omega, 6, 30, False, cols, rp)
    with pytest.raises(ValueError, match="non-decreasing"):
        H(S.words, rb[::-1].copy(), lc, S.omega, 6, 30, False, cols, rp)
    with pytest.raises(ValueError, match="out of range"):
        H(S.words, rb, lc, S.omega, 6, 5, False, cols, rp)
    with pytest.raises(ValueError, match="uint16 or uint32"):
        H(S.words, rb, lc, S.omega, 6, 30, False, cols.astype(np.int16), rp)
    with pytest.raises(ValueError, match="more than 256"):
        H(S.words, rb, lc, np.zeros(300, np.float32), 6, 30, False, cols, rp)
    with pytest.raises(ValueError, match="below 2\\*\\*24"):
        H(S.words, rb, lc, S.omega, 6, 1 << 24, True)
    k = H(S.words, rb, lc, S.omega, 6, 30, False, cols, rp)
    with pytest.raises(ValueError, match="rows out of range"):
        k.decode_rows(4, 3, np.zeros(90, np.float32))
    with pytest.raises(ValueError, match="at least"):
        k.matmul(np.zeros(30, np.float32), np.zeros(12, np.float32), 2)


@pytest.mark.parametrize("n", [1, 30, 58, 59, 60, 61, 75])
def test_row_lengths_around_the_four_row_loop_margin(n):
    """Zero-run rows shorter than, at and just past the 59 entries the 4-row loop keeps
    in reserve (a negative margin was a UBSan error)."""
    W = skewed_matrix(np.random.default_rng(n), 9, n, 32, 0.9, 1.0)
    M = formats.get("ham").from_dense(W)
    assert M._zrun or n == 1
    check_all(M, W, "ham", batches=(1, 20))


@pytest.mark.parametrize("sparsity", [0.45, 0.6, 0.85, 0.97])
@pytest.mark.parametrize("skew", [1.0, 1.7])
def test_fused_zero_run_matvec(sparsity, skew):
    """The fused zero-run matvec (ham, batch 1): one or two codes per lookup (dense and
    sparse rows), escapes (skew 1.7), a short last block of rows (m = 8k + 3)."""
    W = skewed_matrix(np.random.default_rng(int(sparsity * 100) + int(skew * 10)), 19, 2500,
                      40, sparsity, skew)
    W[5, 100:1900] = 0.0  # runs longer than a step skips
    M = formats.get("ham").from_dense(W)
    assert M._zrun
    x = np.random.default_rng(1).standard_normal(2500).astype(np.float32)
    ref = W.astype(np.float64) @ x
    tol = 1e-4 * (1 + np.abs(W).astype(np.float64) @ np.abs(x))
    for name in levels():
        with backend.use(name):
            M.__dict__.pop("_kernel", None)
            assert np.all(np.abs(M.matvec(x) - ref) <= tol), name
            bias = np.arange(19, dtype=np.float32)
            Y = np.empty((1, 19), np.float32)
            M._native().rows(x[None], Y, 1, bias)
            assert np.all(np.abs(Y[0] - (ref + bias)) <= tol), name
            # batches: records of 16 rows, then 3
            X = np.random.default_rng(2).standard_normal((17, 2500)).astype(np.float32)
            R = X.astype(np.float64) @ W.T.astype(np.float64)
            tb = 1e-4 * (1 + np.abs(X).astype(np.float64) @ np.abs(W.T).astype(np.float64))
            assert np.all(np.abs(M.rmatmul(X) - R) <= tb), name
            assert np.all(np.abs(M.matmul(np.ascontiguousarray(X.T)) - R.T) <= tb.T), name


def test_zero_run_constructor_walks_the_stream():
    """A zero-run stream whose rows do not hold n entries each is refused at once (the
    fused matvec trusts the stream)."""
    W = skewed_matrix(np.random.default_rng(10), 4, 90, 8, 0.7, 1.0)
    M = formats.get("ham").from_dense(W)
    assert M._zrun
    H = backend._ext.HuffMatrix
    lc = M.length_counts.astype(np.int64)
    rb = M.row_bits.astype(np.int64)
    H(M.words, rb, lc, M.omega, 4, 90, True)
    bad = rb.copy()
    bad[1] -= 1  # row 0 loses its last bit to row 1
    with pytest.raises(ValueError, match="row 0 does not decode to 90 entries"):
        H(M.words, bad, lc, M.omega, 4, 90, True)
    with pytest.raises(ValueError, match="does not decode"):
        H(M.words, rb, lc, M.omega, 4, 91, True)


@pytest.mark.parametrize("skew", [1.0, 1.7])
def test_fused_sham_matvec(skew):
    """The fused sham matvec: two values per lookup, escapes (skew 1.7), uint32 columns
    (n > 65536), rows with no or one stored entry, a short last block."""
    W = skewed_matrix(np.random.default_rng(int(skew * 10)), 11, 70000, 40, 0.97, skew)
    W[2] = 0.0
    W[4] = 0.0
    W[4, 69999] = 2.5
    M = formats.get("sham").from_dense(W)
    x = np.random.default_rng(2).standard_normal(70000).astype(np.float32)
    ref = W.astype(np.float64) @ x
    tol = 1e-4 * (1 + np.abs(W).astype(np.float64) @ np.abs(x))
    for name in levels():
        with backend.use(name):
            M.__dict__.pop("_kernel", None)
            assert np.all(np.abs(M.matvec(x) - ref) <= tol), name


@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_incomplete_codes_take_the_escape_path(fid):
    """A stored code with unused prefixes (Kraft sum < 1) runs the fused loops that
    test for escapes (a lookup of an unused prefix must not stall a row)."""
    from compactnn.coding.huffman import encode

    rng = np.random.default_rng(12)
    m, n = 11, 300
    if fid == "ham":  # "0" (+0.0), "100", "101"; "11" unused
        lc, omega = np.array([1, 0, 2], np.uint64), np.array([0.0, 1.5, -2.0], np.float32)
        sym = rng.choice(3, size=m * n, p=[0.6, 0.2, 0.2])
        bufs = {}
        counts = np.arange(m + 1) * n
    else:  # "00", "01", "10"; "11" unused
        lc, omega = np.array([0, 3], np.uint64), np.array([1.5, -2.0, 0.25], np.float32)
        sym = rng.choice(3, size=m * n)
        bufs = dict(col_idx=np.tile(np.arange(n, dtype=np.uint16), m),
                    row_ptr=(np.arange(m + 1) * n).astype(np.uint16))
        counts = np.arange(m + 1) * n
    words, row_bits = encode(sym, lc, counts)
    bufs.update(omega=omega, length_counts=lc.astype(np.uint8), words=words,
                row_bits=row_bits.astype(np.uint32))
    M = formats.get(fid).from_buffers(bufs, {"format": fid, "version": 1, "shape": [m, n]})
    W = omega[sym].reshape(m, n)
    X = rng.standard_normal((3, n)).astype(np.float32)
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    tol = 1e-4 * (1 + np.abs(X).astype(np.float64) @ np.abs(W.T).astype(np.float64))
    for name in levels():
        with backend.use(name):
            M.__dict__.pop("_kernel", None)
            assert M.to_dense().tobytes() == W.tobytes(), name
            got = np.empty(sym.size, np.uint8)
            if M._native() is not None:
                M._native().decode_symbols(0, m, got)
                assert np.array_equal(got, sym), name
            assert np.all(np.abs(M.matvec(X[0]) - ref[0]) <= tol[0]), name
            assert np.all(np.abs(M.rmatmul(X) - ref) <= tol), name


tiles = pytest.mark.skipif(not backend._ext.htile_cpu(),
                           reason="this CPU has no AVX-512 VBMI/CD: no tile kernel")


def check_tiles(M, W: np.ndarray, x: np.ndarray) -> None:
    """The tile kernel (batch 1 at the AVX-512 level) built where the rules say, with
    the documented steps, against float64 (with and without bias) and the fused row
    kernel it stands in for (the AVX2 level); and the batched products (up to 4 inputs
    the tile matvec once each, larger batches of zero-run ham decoding the tiles two
    slices at a time), in both layouts, with a bias, and on two threads."""
    from tests.formats.test_huffman_cost import tile_reference

    ref_tiles = tile_reference(M)
    m = W.shape[0]
    ref = W.astype(np.float64) @ x.astype(np.float64)
    tol = 1e-4 * (1 + np.abs(W).astype(np.float64) @ np.abs(x).astype(np.float64))
    bias = np.linspace(-1, 1, m).astype(np.float32)
    with backend.use("avx512"):
        M.__dict__.pop("_kernel", None)
        kern = M._native()
        assert kern.tile_steps == (ref_tiles["steps"] if ref_tiles else 0)
        assert (kern.tile_words > 0) == bool(ref_tiles)
        assert np.all(np.abs(M.matvec(x) - ref) <= tol)
        assert np.all(np.abs(M.rmatmul(x[None])[0] - ref) <= tol)
        Y = np.empty((1, m), np.float32)
        kern.rows(x[None], Y, 1, bias)
        assert np.all(np.abs(Y[0] - (ref + bias)) <= tol)
        with backend.threads(2):  # slices split between the threads (>= 4096 steps)
            assert np.all(np.abs(M.matvec(x) - ref) <= tol)
        rng = np.random.default_rng(x.size)
        for b in (3, 5, 64, 70):
            X = rng.standard_normal((b, x.size)).astype(np.float32)
            refb = X.astype(np.float64) @ W.T.astype(np.float64)
            tolb = 1e-4 * (1 + np.abs(X).astype(np.float64) @ np.abs(W.T).astype(np.float64))
            assert np.all(np.abs(M.rmatmul(X) - refb) <= tolb), b
            assert np.all(np.abs(M.matmul(X.T) - refb.T) <= tolb.T), b
            Yb = np.empty((b, m), np.float32)
            kern.rows(X, Yb, b, bias)
            assert np.all(np.abs(Yb - (refb + bias)) <= tolb), b
            with backend.threads(2):
                assert np.all(np.abs(M.rmatmul(X) - refb) <= tolb), b


@tiles
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 100), n=st.integers(1, 300), k=st.sampled_from([1, 2, 5, 31, 32, 33]),
       sparsity=st.sampled_from([0.0, 0.5, 0.9, 0.97, 0.99]), skew=st.sampled_from([1.0, 1.6]),
       fid=st.sampled_from(["ham", "sham"]), seed=st.integers(0, 2**16))
def test_tile_kernel(m, n, k, sparsity, skew, fid, seed):
    """Shapes around the 16-row slices (three run together) and 32-column tiles, one
    value (a zero-length runtime code), skewed counts (stored codes longer than the
    7-bit runtime code), 33 values (no tiles), sparse sham (no tiles below 1/32)."""
    rng = np.random.default_rng(seed)
    W = skewed_matrix(rng, m, n, k, sparsity, skew)
    check_tiles(formats.get(fid).from_dense(W), W, rng.standard_normal(n).astype(np.float32))


@tiles
@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_tile_kernel_edges(fid):
    """Empty rows and tiles, a row with one entry in the last column, a full tile,
    columns past 4096 that are not a multiple of 32 (x copied to the heap), 1 x 1, and
    a 3-row matrix with one value."""
    rng = np.random.default_rng(3)
    W = skewed_matrix(rng, 70, 4133, 20, 0.8, 1.3)
    W[3] = 0.0
    W[20:36, 64:96] = 0.0  # an empty tile
    W[40:56, 0:32] = 1.5  # a full one: 32 steps
    W[7] = 0.0
    W[7, 4132] = -2.0
    check_tiles(formats.get(fid).from_dense(W), W, rng.standard_normal(4133).astype(np.float32))
    one = np.array([[2.5]], np.float32)
    check_tiles(formats.get(fid).from_dense(one), one, np.array([-1.5], np.float32))
    W = np.zeros((3, 40), np.float32)
    W[:, ::3] = 0.75
    check_tiles(formats.get(fid).from_dense(W), W, rng.standard_normal(40).astype(np.float32))


@tiles
def test_tile_kernel_skips_zeros_of_non_finite_inputs():
    """Entries that are not stored (+0.0) take no part in a tile product: an infinite
    input in a column without entries leaves the rows finite, one in a stored column
    makes them infinite or NaN as the dense product would."""
    W = np.zeros((20, 70), np.float32)
    W[:, 5] = 1.0
    W[::2, 40] = -2.0
    W[:, 60:64] = 0.5  # sham builds tiles from 1/32 of the entries stored
    x = np.ones(70, np.float32)
    x[10] = np.inf
    for fid in ("ham", "sham"):
        M = formats.get(fid).from_dense(W)
        with backend.use("avx512"):
            M.__dict__.pop("_kernel", None)
            assert M._native().tile_steps > 0
            assert np.array_equal(M.matvec(x), W[:, [5, 40, 60, 61, 62, 63]].sum(axis=1))
            x[40] = np.inf
            assert np.isinf(M.matvec(x)[::2]).all()
            x[40] = 1.0
