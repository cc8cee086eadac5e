"""Canonical Huffman codes and the HAM / sHAM formats: code properties, bit-exact
encoding against a plain-Python reference, kernel decoding against a slow reference
decoder, stored size, threading, and every corruption ``check()`` must name."""

from __future__ import annotations

import heapq
import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactnn import formats
from compactnn.coding import entropy_bits, frequency_codebook
from compactnn.coding.huffman import (
    MAX_CODE_LENGTH,
    build_code,
    canonical_codes,
    encode,
    huffman_lengths,
    kraft_sum,
    length_counts,
)
from compactnn.coding.streams import stream_words
from compactnn.formats import FormatError

from .strategies import low_entropy
from .test_huffman_cost import (
    _sparse_reference,
    _zrun_reference,
    check_tile_cost,
    lookups,
    tile_reference,
)

NATIVE_PATHS = ("portable", "avx2", "avx512")  # cost() counts a path whether or not it runs

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
counts_st = st.lists(st.integers(1, 10**6), min_size=1, max_size=300).map(np.array)


# ---- plain-Python references ----------------------------------------------------------


def optimal_cost(counts) -> int:
    """Cost (sum of count * length) of an unrestricted Huffman code: the sum of the
    weights of the internal nodes."""
    h = [int(c) for c in counts]
    heapq.heapify(h)
    cost = 0
    while len(h) > 1:
        s = heapq.heappop(h) + heapq.heappop(h)
        cost += s
        heapq.heappush(h, s)
    return cost


def ref_pack(codes, lengths, sym) -> np.ndarray:
    """MSB-first packing through a string of '0'/'1' characters, with the padding rule."""
    bits = "".join(format(int(codes[s]), f"0{int(lengths[s])}b") if lengths[s] else ""
                   for s in sym)
    nwords = stream_words(len(bits))
    bits = bits.ljust(32 * nwords, "0")
    return np.array([int(bits[32 * i: 32 * i + 32], 2) for i in range(nwords)], np.uint32)


def ref_decode(words, row_bits, lc, counts_per_row) -> list[list[int]]:
    """Canonical decoding one bit at a time: symbol indices of every row."""
    bits = np.unpackbits(words.astype(">u4").view(np.uint8))
    lc = [int(c) for c in lc]
    first, offset, code, off = [0], [0], 0, 0
    for c in lc:
        first.append(code)
        offset.append(off)
        code = (code + c) << 1
        off += c
    rows = []
    for r, cnt in enumerate(counts_per_row):
        p, out = int(row_bits[r]), []
        for _ in range(cnt):
            if not lc:  # zero-length code
                out.append(0)
                continue
            code = 0
            for ln in range(1, len(lc) + 1):
                code = 2 * code + int(bits[p])
                p += 1
                if code - first[ln] < lc[ln - 1]:
                    out.append(offset[ln] + code - first[ln])
                    break
            else:
                raise AssertionError("invalid code")
        assert p == int(row_bits[r + 1])
        rows.append(out)
    return rows


def same_bits(a, b) -> bool:
    return a.shape == b.shape and (a.view(np.uint32) == b.view(np.uint32)).all()


# ---- code construction ----------------------------------------------------------------


@SETTINGS
@given(counts=counts_st)
def test_canonical_code_properties(counts):
    lengths = huffman_lengths(counts)
    assert lengths.dtype == np.uint8 and lengths.shape == counts.shape
    lc = length_counts(lengths)
    assert lc.size <= MAX_CODE_LENGTH
    if counts.size == 1:
        assert lengths.tolist() == [0] and lc.size == 0
        return
    assert kraft_sum(lc) == 1  # complete code
    # more frequent never longer
    order = np.argsort(-counts, kind="stable")
    assert (np.diff(lengths[order].astype(int)) >= 0).all()
    codes, clen = canonical_codes(lc)
    assert (np.diff(clen.astype(int)) >= 0).all()
    # prefix-free: left-justified intervals are disjoint and in increasing order
    lo = codes.astype(object) * [2 ** (32 - int(v)) for v in clen]
    hi = [a + 2 ** (32 - int(v)) for a, v in zip(lo, clen, strict=True)]
    assert all(hi[i] <= lo[i + 1] for i in range(len(lo) - 1))
    assert hi[-1] == 2**32
    # optimal when the length limit does not bind
    assert int(counts @ lengths.astype(np.int64)) == optimal_cost(counts)


@SETTINGS
@given(counts=counts_st.filter(lambda c: c.size >= 2))
def test_average_length_within_one_bit_of_entropy(counts):
    p = counts / counts.sum()
    h = -(p * np.log2(p)).sum()
    avg = (p * huffman_lengths(counts)).sum()
    assert h - 1e-9 <= avg < h + 1


@pytest.mark.parametrize("k", [40, 60, 90])
def test_length_limit_on_fibonacci_counts(k):
    fib = [1, 1]
    while len(fib) < k:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib, np.int64)
    # plain Huffman would use k-1 bits for the rarest symbols
    assert optimal_cost(counts) > 0 and k - 1 > MAX_CODE_LENGTH
    lengths = huffman_lengths(counts)
    assert lengths.max() == MAX_CODE_LENGTH
    lc = length_counts(lengths)
    assert kraft_sum(lc) == 1
    order = np.argsort(-counts, kind="stable")
    assert (np.diff(lengths[order].astype(int)) >= 0).all()
    # still a good code: close to the unrestricted optimum
    assert int(counts @ lengths.astype(np.int64)) <= 1.01 * optimal_cost(counts)


def test_length_limit_small_and_errors():
    assert huffman_lengths(np.ones(256, np.int64), max_len=8).tolist() == [8] * 256
    lengths = huffman_lengths(2 ** np.arange(20, dtype=np.int64), max_len=6)
    assert lengths.max() == 6 and kraft_sum(length_counts(lengths)) == 1
    with pytest.raises(ValueError, match="do not fit"):
        huffman_lengths(np.ones(257, np.int64), max_len=8)
    with pytest.raises(ValueError, match="positive"):
        huffman_lengths(np.array([3, 0]))
    assert huffman_lengths(np.zeros(0, np.int64)).size == 0


@SETTINGS
@given(counts=counts_st, seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 6))
def test_encode_matches_reference_packing_and_decodes(counts, seed, rows):
    rng = np.random.default_rng(seed)
    lc = length_counts(huffman_lengths(counts))
    sym = rng.integers(0, counts.size, rng.integers(0, 200))
    starts = np.sort(np.r_[0, rng.integers(0, sym.size + 1, rows - 1), sym.size])
    words, row_bits = encode(sym, lc, starts)
    codes, lengths = canonical_codes(lc)
    if lengths.size == 0:
        codes, lengths = np.zeros(1, np.uint32), np.zeros(1, np.uint8)
    assert words.dtype == np.uint32
    assert np.array_equal(words, ref_pack(codes, lengths, sym))
    assert row_bits[-1] == int(lengths[sym].astype(np.int64).sum())
    got = ref_decode(words, row_bits, lc, np.diff(starts))
    assert np.concatenate([np.array(r, np.int64) for r in got] + [np.zeros(0, np.int64)]) \
        .tolist() == sym.tolist()


@SETTINGS
@given(W=low_entropy(max_rows=30, max_cols=50), ties=st.booleans())
def test_frequency_codebook_matches_a_plain_sort(W, ties):
    """The codebook (which sorts only the non +0.0 entries, then inserts +0.0) equals
    the definition: all entries sorted by (-count, value, bit pattern)."""
    if ties:  # +0.0 ties (or nearly ties) with a negative, -0.0 and a positive value
        W = np.resize(np.array([2.0, 0, -0.0, -1.5], np.float32), W.shape)
    bits = W.reshape(-1).view(np.uint32)
    uniq, inv, counts = np.unique(bits, return_inverse=True, return_counts=True)
    order = np.lexsort((uniq, uniq.view(np.float32), -counts))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    a = uniq[order].view(np.float32), rank[inv.reshape(-1)], counts[order]
    b = frequency_codebook(W)
    assert same_bits(a[0], b[0])
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


# ---- HAM / sHAM -----------------------------------------------------------------------


@pytest.mark.parametrize("fid", ["ham", "sham"])
@SETTINGS
@given(W=low_entropy(max_rows=30, max_cols=50))
def test_kernel_decode_matches_reference_decoder(fid, W):
    M = formats.get(fid).from_dense(W)
    m, n = W.shape
    if fid == "ham":
        per_row = [n] * m
    else:
        per_row = np.diff(M.row_ptr.astype(np.int64)).tolist()
    rows = ref_decode(M.words, M.row_bits, M.length_counts, per_row)
    ref = np.zeros(W.shape, np.float32)
    for r, syms in enumerate(rows):
        vals = M.omega[np.array(syms, np.int64)] if syms else np.zeros(0, np.float32)
        if fid == "ham":
            ref[r] = vals
        else:
            ref[r, M.col_idx[M.row_ptr[r]:M.row_ptr[r + 1]].astype(np.int64)] = vals
    assert same_bits(ref, W)
    assert same_bits(M.to_dense(), ref)


@SETTINGS
@given(W=low_entropy(max_rows=30, max_cols=50))
def test_ham_stored_bits_are_the_huffman_length(W):
    M = formats.get("ham").from_dense(W)
    omega, lc, sym, counts = build_code(W)
    lengths = huffman_lengths(counts).astype(np.int64)
    code_bits = int(counts @ lengths)
    assert M.stream_bits == code_bits
    assert M.words.size == code_bits // 32 + 2
    assert M.nbytes == (4 * (code_bits // 32 + 2) + 4 * omega.size + M.length_counts.nbytes
                        + M.to_buffers()[0]["row_bits"].nbytes)
    if W.size:
        h = entropy_bits(W)
        assert h - 1e-6 * W.size <= code_bits < h + W.size


def test_sham_stores_values_only_for_nonzero_bit_patterns():
    W = np.array([[0.0, -0.0, 1.5], [0.0, 0.0, 0.0], [2.5, 1.5, 1.5]], np.float32)
    M = formats.get("sham").from_dense(W)
    assert M.nnz == 5 and M.row_ptr.tolist() == [0, 2, 2, 5]
    assert same_bits(M.omega, np.array([1.5, -0.0, 2.5], np.float32))  # by frequency
    assert same_bits(M.to_dense(), W)
    c = M.cost(backend="numba")
    assert c.adds == c.mults == 5 and c.reads["col_idx"][0] == 5
    ref = _sparse_reference(M)  # 6-row blocks: the last row repeated 3 times
    tiles = tile_reference(M)
    for path in NATIVE_PATHS:
        c = M.cost(backend=path)
        if path == "avx512" and tiles:  # one 16 x 32 tile: row 2's three entries
            assert tiles["steps"] == 3
            check_tile_cost(c, tiles, 3)
            continue
        assert c.adds == c.mults == c.reads["col_idx"][0] == ref["mult"]
        assert lookups(c, "ptab") == ref["lookup"]


def _code33():
    """A complete code with lengths 1..31 (one each) and two 32-bit codes."""
    return np.array([1] * 31 + [2], np.uint64)


@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_codes_of_32_bits_and_the_canonical_search(fid):
    lc = _code33()
    k = 33
    rng = np.random.default_rng(7)
    omega = (np.arange(1, k + 1, dtype=np.float32) * 0.25).astype(np.float32)
    m, n = 5, 40
    sym = rng.permutation(np.r_[np.arange(k), rng.integers(0, k, m * n - k)])
    W = omega[sym].reshape(m, n)
    words, row_bits = encode(sym, lc, np.arange(m + 1) * n)
    bufs = dict(omega=omega, length_counts=lc.astype(np.uint8), words=words,
                row_bits=row_bits.astype(np.uint32))
    if fid == "sham":  # every entry stored
        bufs.update(col_idx=np.tile(np.arange(n, dtype=np.uint8), m),
                    row_ptr=(np.arange(m + 1) * n).astype(np.uint16))
    M = formats.get(fid).from_buffers(bufs, {"format": fid, "version": 1, "shape": [m, n]})
    assert M.length_counts.size == 32
    assert same_bits(M.to_dense(), W)
    x = rng.standard_normal(n).astype(np.float32)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    np.testing.assert_allclose(M.matvec(x), W.astype(np.float64) @ x, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(M.matmul(X), W.astype(np.float64) @ X, rtol=1e-5, atol=1e-4)
    c = M.cost(backend="numba")  # codes longer than the 10-bit LUT: the canonical search
    assert c.reads["limit"][0] > 0
    assert c.reads["base"][0] == c.reads["omega"][0] == np.count_nonzero(sym >= 10)
    # longer than the native 11-bit tables; sHAM's fused matvec walks 6-row blocks, the
    # short last block repeating its last row
    rows = list(range(m)) + ([m - 1] * (-m % 6) if fid == "sham" else [])
    esc = int(np.count_nonzero(sym.reshape(m, n)[rows] >= 11))
    for path in NATIVE_PATHS:
        c = M.cost(backend=path)
        assert c.reads["limit"][0] > 0
        assert c.reads["base"][0] == c.reads["lut"][0] == esc


def test_ham_long_codes_from_dense_and_zero_runs():
    # geometric counts give codes longer than the 10-bit table; long zero runs (> 64)
    rng = np.random.default_rng(3)
    counts = 2 ** np.arange(15, 0, -1)
    vals = np.r_[np.float32(0), rng.standard_normal(counts.size - 1).astype(np.float32)]
    W = np.repeat(vals, counts)[rng.permutation(counts.sum())].reshape(-1, 217)  # 302 x 217
    W[3, :150] = 0
    W[5] = 0
    W[7, 100:] = 0
    M = formats.get("ham").from_dense(W)
    assert M._zrun and M.length_counts.size > 10
    assert same_bits(M.to_dense(), W)
    x = rng.standard_normal(W.shape[1]).astype(np.float32)
    np.testing.assert_allclose(M.matvec(x), W.astype(np.float64) @ x, rtol=1e-4, atol=1e-3)
    c = M.cost(backend="numba")  # one lookup and multiply per non-zero entry
    assert c.mults == np.count_nonzero(W.view(np.uint32))
    assert c.reads["lut"][0] == c.mults and "limit" in c.reads
    tiles = tile_reference(M)
    for path in NATIVE_PATHS:  # the fused zero-run matvec: codes > 12 bits, no pairs
        ref = _zrun_reference(M, pair=False)
        c = M.cost(backend=path)
        if path == "avx512" and tiles:
            check_tile_cost(c, tiles, W.shape[0])
            continue
        assert c.mults == ref["mult"] and lookups(c, "ztab") == ref["lookup"]
        assert c.reads["window"][0] == ref["peek"] and c.reads["base"][0] == ref["esc"] > 0
    # the same matrix without zeros as symbol 0: every entry is decoded and multiplied
    M2 = formats.get("ham").from_dense(W + np.float32(7))
    assert not M2._zrun
    for path in ("numba", *NATIVE_PATHS):
        assert M2.cost(backend=path).mults == W.size


@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_single_and_multi_thread_identical(fid):
    rng = np.random.default_rng(11)
    vals = rng.standard_normal(32).astype(np.float32)
    W = vals[rng.integers(0, 32, (301, 517))]
    W[rng.random(W.shape) < 0.8] = 0
    M = formats.get(fid).from_dense(W)
    x = rng.standard_normal(W.shape[1]).astype(np.float32)
    X = rng.standard_normal((W.shape[1], 4)).astype(np.float32)
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


# ---- corruption -----------------------------------------------------------------------


def _parts(fid, W=None):
    if W is None:
        W = np.random.default_rng(5).choice(
            np.array([0, 0, 0, 0, 0.5, -1.25, 2.0, 3.0, 3.0], np.float32), size=(9, 31))
    M = formats.get(fid).from_dense(W)
    bufs, attrs = M.to_buffers()
    return M, dict(bufs), attrs


def _rejects(fid, bufs, attrs, match):
    with pytest.raises(FormatError, match=match):
        formats.get(fid).from_buffers(bufs, attrs)


@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_corruption_dtypes_and_lengths(fid):
    M, b, a = _parts(fid)
    _rejects(fid, {**b, "words": b["words"].astype(np.uint64)}, a, f"{fid}: array 'words'.*uint32")
    _rejects(fid, {**b, "omega": b["omega"].astype(np.float64)}, a, "'omega' must be float32")
    _rejects(fid, {**b, "length_counts": b["length_counts"].astype(np.int16)}, a,
             "'length_counts' has dtype")
    _rejects(fid, {**b, "row_bits": b["row_bits"][:-1]}, a, "'row_bits' has length")
    _rejects(fid, {**b, "row_bits": b["row_bits"].astype(np.float32)}, a, "'row_bits' has dtype")
    _rejects(fid, {**b, "omega": b["omega"][:-1]}, a, "counts .* codes but 'omega' has")


@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_corruption_row_bits(fid):
    M, b, a = _parts(fid)
    rb = b["row_bits"].astype(np.uint64)
    bad = rb.copy()
    bad[3], bad[4] = rb[4], rb[3] - 1
    _rejects(fid, {**b, "row_bits": bad}, a, "'row_bits' is not non-decreasing")
    bad = rb.copy()
    bad[0] = 1
    _rejects(fid, {**b, "row_bits": bad}, a, "'row_bits' must start at 0")
    bad = rb.copy()
    bad[-1] += 64
    _rejects(fid, {**b, "row_bits": bad}, a, "'words' is truncated")
    _rejects(fid, {**b, "words": b["words"][:-1]}, a, "'words' is truncated")
    _rejects(fid, {**b, "words": np.r_[b["words"], np.uint32(0)]}, a, "'words' has .* expected")
    _rejects(fid, {**b, "words": np.r_[b["words"][:-1], np.uint32(1)]}, a, "non-zero padding")
    bad = rb.copy()
    bad[1:-1] += 1  # row 0 claims one bit more than its codes use
    _rejects(fid, {**b, "row_bits": bad}, a, "row 0 has bits left over")
    bad = rb.copy()
    bad[1] -= 1  # row 0's codes run into row 1
    _rejects(fid, {**b, "row_bits": bad}, a, "row 0 has codes running past")


@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_corruption_code_table(fid):
    M, b, a = _parts(fid)
    lc = b["length_counts"].astype(np.uint64)
    over = lc.copy()
    over[0] += 1
    _rejects(fid, {**b, "length_counts": over}, a, "over-full code")
    _rejects(fid, {**b, "length_counts": np.r_[lc, np.uint64(0)]}, a, "ends with a zero count")
    long = np.r_[np.zeros(32, np.uint64), np.ones(1, np.uint64)]
    _rejects(fid, {**b, "length_counts": long}, a, "more than 32")
    _rejects(fid, {**b, "length_counts": lc[:0]}, a, "'length_counts' is empty but")


@pytest.mark.parametrize("fid", ["ham", "sham"])
def test_corruption_unused_prefix(fid):
    W = np.array([[1.0, 1.0, 2.0, 1.0, 1.0, 1.0]], np.float32)
    M, b, a = _parts(fid, W)
    # an incomplete code {0, 10} (Kraft sum 3/4) is valid: the prefix 11 is unused
    lc = np.array([1, 1], np.uint8)
    words, row_bits = encode(np.array([0, 0, 1, 0, 0, 0]), lc, np.array([0, 6]))
    b.update(length_counts=lc, words=words, row_bits=row_bits.astype(np.uint8))
    assert same_bits(formats.get(fid).from_buffers(b, a).to_dense(), W)
    assert words[0] == int("0010000".ljust(32, "0"), 2)
    b["words"] = np.array([int("1110000".ljust(32, "0"), 2), 0], np.uint32)
    _rejects(fid, b, a, "row 0 holds an unused code prefix")


def test_corruption_sham_indices_and_zero_symbol():
    M, b, a = _parts("sham")
    ci = b["col_idx"].astype(np.uint64)
    ci[5] = 31
    _rejects("sham", {**b, "col_idx": ci}, a, "'col_idx' has value 31 out of range")
    rp = b["row_ptr"].astype(np.uint64)
    rp[4] = rp[-1] + 1
    _rejects("sham", {**b, "row_ptr": rp}, a, "'row_ptr' is not non-decreasing")
    _rejects("sham", {**b, "col_idx": b["col_idx"][:-1]}, a, "'row_ptr' ends at")
    om = b["omega"].copy()
    om[-1] = 0.0
    _rejects("sham", {**b, "omega": om}, a, "holds \\+0.0")


def test_empty_and_constant_symbol_tables():
    for fid in ("ham", "sham"):
        F = formats.get(fid)
        E = F.from_dense(np.zeros((3, 0), np.float32))
        assert E.omega.size == 0 and E.length_counts.size == 0 and E.stream_bits == 0
        b, a = E.to_buffers()
        _rejects(fid, {**b, "omega": np.ones(1, np.float32)}, a, "symbols for 0 coded")
    C = formats.get("ham").from_dense(np.full((4, 5), 2.5, np.float32))
    assert C.omega.tolist() == [2.5] and C.length_counts.size == 0
    assert C.stream_bits == 0 and C.words.tolist() == [0, 0]  # the zero-length code
    assert C.matvec(np.ones(5, np.float32)).tolist() == [12.5] * 4


def test_decoding_tables_are_not_stored():
    M = formats.get("ham").from_dense(np.eye(64, dtype=np.float32))
    bufs, _ = M.to_buffers()
    assert set(bufs) == {"omega", "length_counts", "words", "row_bits"}
    assert M.nbytes == sum(v.nbytes for v in bufs.values())
    assert M._tab.lut_len.nbytes > 0  # runtime cache exists but is not stored
    assert math.isclose(M.bits_per_weight, 8 * M.nbytes / 64**2)


@SETTINGS
@given(keys=st.sets(st.integers(0, 2**32 - 1), min_size=1, max_size=300),
       hashed=st.booleans(), data=st.data())
def test_code_lookup_equals_binary_search(keys, hashed, data):
    """The hash-table lookup (small codebooks) and the binary search (large ones) give
    ``rank[searchsorted(keys, b)]``, including the key 0 (+0.0) and colliding keys."""
    import compactnn.coding.codebook as cb

    keys = np.array(sorted(keys | {0}), np.uint32)
    rank = np.random.default_rng(len(keys)).permutation(keys.size).astype(np.int64)
    picks = data.draw(st.lists(st.integers(0, keys.size - 1), max_size=500))
    flat = keys[np.array(picks, np.int64)]
    saved = cb._HASH_MAX_KEYS
    cb._HASH_MAX_KEYS = saved if hashed else 0
    try:
        got = cb._lookup(flat, keys, rank)
    finally:
        cb._HASH_MAX_KEYS = saved
    assert np.array_equal(got, rank[np.searchsorted(keys, flat)])


@SETTINGS
@given(W=low_entropy(max_rows=30, max_cols=50), signed_zeros=st.booleans())
def test_entropy_bits_matches_the_definition(W, signed_zeros):
    """Counts by bit pattern (-0.0 is its own symbol), entropy times the entry count."""
    if signed_zeros:
        W = W.copy()
        W.reshape(-1)[::3] = -0.0
    _, counts = np.unique(W.reshape(-1).view(np.uint32), return_counts=True)
    want = float(-(counts * np.log2(counts / max(W.size, 1))).sum()) if W.size else 0.0
    assert entropy_bits(W) == pytest.approx(want, rel=1e-12, abs=1e-9)
