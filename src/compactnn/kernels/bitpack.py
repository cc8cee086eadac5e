"""MSB-first bit streams in uint32 words: packing, bit readers, index-map kernels.

Bit order: stream bit ``p`` is bit ``31 - p % 32`` (counting from the least
significant) of ``words[p // 32]``, so the first code fills the most significant bits
of word 0. Every stream is followed by padding: the word holding bit ``total`` (one
past the data) exists and is followed by one more word. Two readers rely on it
without bounds checks: ``peek32`` (a 64-bit window ``words[p >> 5] << 32 |
words[(p >> 5) + 1]``, in bounds for every ``p <= total``) and the bit buffer
``start``/``refill`` (64 bits, refilled one word at a time; the word it loads always
starts before ``position + 32``). Callers must have validated the word count first.

Costs: ``pack_codes`` O(entries), serial (rows share boundary words); the index-map
kernels decode each of the m*n codes once per call, touching each data word once
(plus one look-ahead word per row). ``fixed_rows_to_dense`` also decodes a tile of
rows into a scratch buffer for the tiled matrix product of ``formats.index_map``."""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import inline, jit, prange

_U32 = np.uint64(32)



@inline
def peek32(words, p):  # pragma: no cover - compiled
    """The 32 stream bits starting at bit ``p`` (uint64, right-aligned)."""
    w = p >> 5
    win = (np.uint64(words[w]) << _U32) | np.uint64(words[w + 1])
    return (win << np.uint64(p & 31)) >> _U32


@inline
def start(words, p):  # pragma: no cover - compiled
    """Bit reader ``(buf, nb, wi)`` at stream bit ``p``: ``buf`` holds ``nb`` valid
    bits left-aligned (the bits below them are zero), ``wi`` is the next word to load.
    Reads ``words[p >> 5]``."""
    wi = p >> 5
    return np.uint64(words[wi]) << np.uint64(32 + (p & 31)), 32 - (p & 31), wi + 1


@inline
def refill(words, buf, nb, wi):  # pragma: no cover - compiled
    """Load the next word if fewer than 32 bits are buffered (then ``nb >= 32``). The
    word loaded starts before stream bit ``position + 32``, so reading up to any
    position ``<= total`` stays inside the padded array."""
    if nb < 32:
        buf |= np.uint64(words[wi]) << np.uint64(32 - nb)
        wi += 1
        nb += 32
    return buf, nb, wi


@inline
def take(words, buf, nb, wi, b, sh, ub):  # pragma: no cover - compiled
    """The next ``b``-bit code of a fixed-width stream (``sh = 32 - b``, ``ub = b`` as
    uint64) and the advanced reader ``(buf, nb, wi)``."""
    buf, nb, wi = refill(words, buf, nb, wi)
    return (buf >> _U32) >> sh, buf << ub, nb - b, wi


@jit
def pack_codes(sym, codes, lengths, starts, words, row_bits):  # pragma: no cover - compiled
    """Write ``codes[sym[i]]`` (``lengths[sym[i]]`` bits, right-aligned in uint32) for
    every i, MSB-first, into zero-filled ``words``; ``row_bits[r]`` receives the bit
    offset of entry ``starts[r]`` (``starts`` int64 (m+1,), row_bits int64 (m+1,)).
    Serial: rows share boundary words. Lengths are at most 32."""
    acc = np.uint64(0)  # pending bits, right-aligned
    nacc = np.int64(0)  # number of pending bits (< 32 between codes)
    wi = np.int64(0)
    r = np.int64(0)
    nrows = starts.shape[0]
    for i in range(sym.shape[0] + 1):
        while r < nrows and starts[r] == i:
            row_bits[r] = wi * 32 + nacc
            r += 1
        if i == sym.shape[0]:
            break
        s = sym[i]
        ln = np.int64(lengths[s])
        acc = (acc << np.uint64(ln)) | np.uint64(codes[s])
        nacc += ln
        if nacc >= 32:
            nacc -= 32
            words[wi] = np.uint32((acc >> np.uint64(nacc)) & np.uint64(0xFFFFFFFF))
            wi += 1
    if nacc > 0:
        words[wi] = np.uint32((acc << np.uint64(32 - nacc)) & np.uint64(0xFFFFFFFF))
    while r < nrows:
        row_bits[r] = wi * 32 + nacc
        r += 1


@jit(parallel=True)
def fixed_matvec(words, b, omega, x, y):  # pragma: no cover - compiled
    """y (m,) = W @ x (n,) for an index map: entry (r, j) is the ``b``-bit code at bit
    ``(r * n + j) * b`` (b <= 32; 0 means every code is 0), its value
    ``omega[code]``. A bit reader per row; four accumulators."""
    m = y.shape[0]
    n = x.shape[0]
    sh = np.uint64(32 - b)
    ub = np.uint64(b)
    for r in prange(m):
        buf, nb, wi = start(words, np.int64(r) * n * b)
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        j = 0
        while j + 4 <= n:
            c0, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
            c1, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
            c2, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
            c3, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
            a0 += omega[c0] * x[j]
            a1 += omega[c1] * x[j + 1]
            a2 += omega[c2] * x[j + 2]
            a3 += omega[c3] * x[j + 3]
            j += 4
        while j < n:
            c0, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
            a0 += omega[c0] * x[j]
            j += 1
        y[r] = (a0 + a1) + (a2 + a3)


@jit(parallel=True)
def fixed_max(words, b, count, chunks):  # pragma: no cover - compiled
    """Largest of the ``count`` fixed-width codes (0 if none), scanned in ``chunks``
    parallel pieces."""
    sh = np.uint64(32 - b)
    best = np.zeros(chunks, np.uint64)
    size = (count + chunks - 1) // chunks
    for c in prange(chunks):
        hi = np.uint64(0)
        p = np.int64(c) * size * b
        for _ in range(c * size, min(count, (c + 1) * size)):
            v = peek32(words, p) >> sh
            if v > hi:
                hi = v
            p += b
        best[c] = hi
    return best.max()


@inline
def _decode_row(words, b, omega, first, row):  # pragma: no cover - compiled
    """``row[j] = omega[code j]`` for the ``row.size`` codes of ``b`` bits starting at
    stream bit ``first``."""
    n = row.shape[0]
    sh = np.uint64(32 - b)
    ub = np.uint64(b)
    buf, nb, wi = start(words, first)
    j = 0
    while j + 4 <= n:
        c0, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
        c1, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
        c2, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
        c3, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
        row[j] = omega[c0]
        row[j + 1] = omega[c1]
        row[j + 2] = omega[c2]
        row[j + 3] = omega[c3]
        j += 4
    while j < n:
        c0, buf, nb, wi = take(words, buf, nb, wi, b, sh, ub)
        row[j] = omega[c0]
        j += 1


@jit(parallel=True)
def fixed_rows_to_dense(words, b, omega, r0, out):  # pragma: no cover - compiled
    """out (t, n) = rows ``r0 .. r0 + t - 1`` of an index map, each entry
    ``omega[code]``, rows in parallel. Reads each row's words once (plus one look-ahead
    word), writes t * n floats."""
    t, n = out.shape
    for i in prange(t):
        _decode_row(words, b, omega, (np.int64(r0) + i) * n * b, out[i])

