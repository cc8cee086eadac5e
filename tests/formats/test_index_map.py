"""``index_map`` and the fixed-width bit packing: code width, exact layout against a
plain-Python packer, stored size, threading, tiled products, and the corruptions
``check()`` names."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactnn import formats
from compactnn.coding import frequency_codebook
from compactnn.formats import FormatError, index_map
from compactnn.formats.index_map import code_bits, tile_rows
from compactnn.kernels import bitpack

from .strategies import low_entropy

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def ref_words(codes: np.ndarray, b: int) -> np.ndarray:
    """MSB-first fixed-width packing through a string of bits, with the padding rule."""
    bits = "".join(format(int(c), f"0{b}b") for c in codes) if b else ""
    nwords = len(bits) // 32 + 2
    bits = bits.ljust(32 * nwords, "0")
    return np.array([int(bits[32 * i: 32 * i + 32], 2) for i in range(nwords)], np.uint32)


def same_bits(a, b) -> bool:
    return a.shape == b.shape and (a.view(np.uint32) == b.view(np.uint32)).all()


@pytest.mark.parametrize("k,b", [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (256, 8),
                                 (257, 9), (70001, 17), (2**32, 32)])
def test_code_bits(k, b):
    assert code_bits(k) == b


@SETTINGS
@given(W=low_entropy(max_rows=20, max_cols=40))
def test_layout_matches_reference_packing(W):
    M = formats.get("index_map").from_dense(W)
    omega, codes, _ = frequency_codebook(W)
    assert same_bits(M.omega, omega)
    b = code_bits(omega.size)
    assert M.bits == b
    assert np.array_equal(M.words, ref_words(codes, b))
    assert M.nbytes == 4 * ((W.size * b) // 32 + 2) + 4 * omega.size


@SETTINGS
@given(b=st.integers(0, 32), n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_pack_and_peek_every_width(b, n, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**b, n, dtype=np.uint64)
    words = np.zeros(n * b // 32 + 2, np.uint32)
    rows = np.zeros(2, np.int64)
    bitpack.pack_codes(np.arange(n), codes.astype(np.uint32), np.full(max(n, 1), b, np.uint8),
                       np.array([0, n]), words, rows)
    assert rows.tolist() == [0, n * b]
    assert np.array_equal(words, ref_words(codes, b))
    top = int(bitpack.fixed_max(words, b, n, 3))
    assert top == (int(codes.max()) if n else 0)


@pytest.mark.parametrize("b", [1, 5, 8, 13, 16])
def test_fixed_kernels_decode_every_width(b):
    rng = np.random.default_rng(b)
    m, n = 7, 53
    codes = rng.integers(0, 2**b, m * n)
    omega = rng.standard_normal(2**b).astype(np.float32)
    words = np.zeros(m * n * b // 32 + 2, np.uint32)
    bitpack.pack_codes(codes, np.arange(2**b, dtype=np.uint32), np.full(2**b, b, np.uint8),
                       np.array([0, m * n]), words, np.zeros(2, np.int64))
    W = omega[codes].reshape(m, n)
    out = np.empty((m, n), np.float32)
    bitpack.fixed_rows_to_dense(words, b, omega, 0, out)
    assert same_bits(out, W)
    tile = np.empty((3, n), np.float32)
    bitpack.fixed_rows_to_dense(words, b, omega, 4, tile)  # rows 4..6: a tile at the end
    assert same_bits(tile, W[4:])
    x = rng.standard_normal(n).astype(np.float32)
    y = np.empty(m, np.float32)
    bitpack.fixed_matvec(words, b, omega, x, y)
    np.testing.assert_allclose(y, W.astype(np.float64) @ x, rtol=1e-5, atol=1e-5)


def test_single_and_multi_thread_identical():
    rng = np.random.default_rng(11)
    W = rng.standard_normal(37).astype(np.float32)[rng.integers(0, 37, (301, 517))]
    M = formats.get("index_map").from_dense(W)
    x = rng.standard_normal(517).astype(np.float32)
    X = rng.standard_normal((517, 4)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = (M.matvec(x), M.matmul(X), M.to_dense())
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = (M.matvec(x), M.matmul(X), M.to_dense())
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, many, strict=True):
        assert same_bits(a, b)


@pytest.mark.parametrize("m,n", [(8, 8), (1000, 3), (5, 20000), (37, 517)])
def test_tile_rows(m, n):
    t = tile_rows(m, n)
    assert 1 <= t <= m
    assert t == m or (t % 8 == 0 and (t * n <= index_map.TILE_FLOATS or t == 8))


@pytest.mark.parametrize("tile_floats", [1, 517 * 8, 517 * 20, 1 << 16])
@pytest.mark.parametrize("k", [1, 2, 7, 64])
def test_tiled_matmul_every_tile_split(monkeypatch, tile_floats, k):
    """Tiled products (tiles of 8 rows, a partial last tile, one tile) match the float64
    product of the decoded matrix, and one column is exactly the fused matvec."""
    monkeypatch.setattr(index_map, "TILE_FLOATS", tile_floats)
    rng = np.random.default_rng(k)
    W = rng.standard_normal(13).astype(np.float32)[rng.integers(0, 13, (301, 517))]
    M = formats.get("index_map").from_dense(W)
    X = rng.standard_normal((517, k)).astype(np.float32)
    Y = M.matmul(X)
    np.testing.assert_allclose(Y, W.astype(np.float64) @ X, rtol=1e-4, atol=1e-4)
    if k == 1:
        assert same_bits(Y[:, 0], M.matvec(X[:, 0]))


def test_constant_matrix_has_no_code_bits():
    M = formats.get("index_map").from_dense(np.full((6, 9), -0.0, np.float32))
    assert M.bits == 0 and M.words.tolist() == [0, 0]
    assert same_bits(M.to_dense(), np.full((6, 9), -0.0, np.float32))


def test_cost_counts_words_touched():
    from compactnn.kernels import backend

    W = np.random.default_rng(0).choice(np.arange(5, dtype=np.float32), (4, 32))
    with backend.use("numba"):
        c = formats.get("index_map").from_dense(W).cost()  # b = 3: 96 bits = 3 words a row
    assert c.reads["words"][0] == 4 * (3 + 1)
    assert c.reads["omega"][0] == c.reads["x"][0] == c.mults == 128


def test_cost_of_the_native_kernel_counts_runtime_codes():
    from compactnn.kernels import backend

    if backend._ext is None:
        pytest.skip("native extension not built")
    W = np.random.default_rng(0).choice(np.arange(5, dtype=np.float32), (4, 40))
    with backend.use(backend.BACKENDS[backend._ext.cpu_level()]):
        c = formats.get("index_map").from_dense(W).cost()
    # K = 5 <= 16: nibbles, 40 columns -> 2 blocks of 16 bytes per row, read as 16-byte loads
    assert c.reads["codes"][:3] == (4 * 2, 128, 4 * 32)
    assert c.reads["omega"][0] == 5 and c.reads["x"][0] == c.mults == 160


def _rejects(bufs, attrs, match):
    with pytest.raises(FormatError, match=match):
        formats.get("index_map").from_buffers(bufs, attrs)


def test_corruptions_named():
    vals = np.array([0, 0, 0.5, -1.25, 2.0, 3.0], np.float32)  # K = 5: 3-bit codes
    W = np.random.default_rng(5).choice(vals, (9, 31))
    bufs, a = formats.get("index_map").from_dense(W).to_buffers()
    b = dict(bufs)
    w = b["words"]
    _rejects({**b, "words": np.r_[np.uint32(0xFFFFFFFF), w[1:]]}, a,
             "index_map: array 'words' holds code 7, out of range \\[0, 5\\)")
    _rejects({**b, "words": w[:-1]}, a, "index_map: array 'words' is truncated")
    _rejects({**b, "words": np.r_[w, np.uint32(0)]}, a, "'words' has .* expected")
    _rejects({**b, "words": np.r_[w[:-1], np.uint32(1)]}, a, "non-zero padding")
    _rejects({**b, "words": w.astype(np.uint64)}, a, "'words' has dtype uint64")
    _rejects({**b, "omega": b["omega"].astype(np.float64)}, a, "'omega' must be float32")
    _rejects({**b, "omega": b["omega"][:0]}, a, "'omega' has 0 symbols for a 9x31 matrix")
    _rejects({**b, "omega": np.r_[b["omega"], np.float32(np.nan)]}, a, "NaN or Inf")
    # one symbol fewer changes the code width from 3 to 2 bits: word count mismatch
    _rejects({**b, "omega": b["omega"][:-1]}, a, "'words' has 28 words, expected 19")
