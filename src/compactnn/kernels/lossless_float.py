"""Kernels of the ``lossless_float`` format: fixed-width packing and row decoding.

An entry is rebuilt from two streams (see :mod:`compactnn.formats.lossless_float`):
its *head* (exponent and the top ``h`` mantissa bits, a canonical Huffman code in
``words``, table-driven as in :mod:`compactnn.kernels.huffman`) and its *tail* (sign
and the remaining stored mantissa bits, ``w`` bits in ``tails``). The decoding cache's
``lut_val`` and ``omega`` are passed as uint32 views: a decoded head is the entry's
bit pattern with sign and tail bits cleared. Rows come in blocks of ``BLOCK``; the
head stream of a block starts at ``block_bits[b]``, the tail of row ``r`` at bit ``r *
n * w``, so blocks decode independently (in parallel, or one tile at a time); kernels
decode two blocks in one loop so that their table lookups overlap.
"""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import inline, jit, prange
from compactnn.kernels.bitpack import refill, start, take
from compactnn.kernels.huffman import lookup

BLOCK = 8
"""Rows per entry of ``block_bits`` (one stream offset per block)."""

_U32 = np.uint64(32)


@jit
def pack_fixed(values, w, words):  # pragma: no cover - compiled
    """Write the low ``w`` bits (1 <= w <= 32) of every uint32 in ``values``,
    MSB-first, into the zero-filled ``words``."""
    acc = np.uint64(0)
    nacc = np.int64(0)
    wi = np.int64(0)
    mask = np.uint64((1 << w) - 1)
    for i in range(values.shape[0]):
        acc = (acc << np.uint64(w)) | (np.uint64(values[i]) & mask)
        nacc += w
        if nacc >= 32:
            nacc -= 32
            words[wi] = np.uint32((acc >> np.uint64(nacc)) & np.uint64(0xFFFFFFFF))
            wi += 1
    if nacc > 0:
        words[wi] = np.uint32((acc << np.uint64(32 - nacc)) & np.uint64(0xFFFFFFFF))


@inline
def _decode_row(words, hb, hn, hw, tails, tb, tn, tw, w, z, t, lut_len, lut_val, limit, base,
                omega, row):  # pragma: no cover - compiled
    """Decode one row into the uint32 ``row``: per entry a head (Huffman) and a
    ``w``-bit tail (sign, then mantissa bits shifted up by ``z``). Returns both
    readers."""
    sh = np.uint64(32 - w)
    ub = np.uint64(w)
    top = np.uint64(w - 1)
    mmask = np.uint64((1 << (w - 1)) - 1)
    uz = np.uint64(z)
    for j in range(row.shape[0]):
        hb, hn, hw = refill(words, hb, hn, hw)
        head, ln = lookup(hb >> _U32, t, lut_len, lut_val, limit, base, omega)
        hb <<= np.uint64(ln)
        hn -= ln
        tail, tb, tn, tw = take(tails, tb, tn, tw, w, sh, ub)
        row[j] = np.uint32(np.uint64(head) | ((tail >> top) << np.uint64(31))
                           | ((tail & mmask) << uz))
    return hb, hn, hw, tb, tn, tw


@inline
def _decode_two_rows(words, ha, hna, hwa, hb, hnb, hwb, tails, ta, tna, twa, tb, tnb, twb, w,
                     z, t, lut_len, lut_val, limit, base, omega, row_a,
                     row_b):  # pragma: no cover - compiled
    """``_decode_row`` on two rows of different blocks in one loop (two independent
    dependency chains, so their table lookups overlap). Returns the four readers."""
    sh = np.uint64(32 - w)
    ub = np.uint64(w)
    top = np.uint64(w - 1)
    mmask = np.uint64((1 << (w - 1)) - 1)
    uz = np.uint64(z)
    for j in range(row_a.shape[0]):
        ha, hna, hwa = refill(words, ha, hna, hwa)
        hb, hnb, hwb = refill(words, hb, hnb, hwb)
        head_a, la = lookup(ha >> _U32, t, lut_len, lut_val, limit, base, omega)
        head_b, lb = lookup(hb >> _U32, t, lut_len, lut_val, limit, base, omega)
        ha <<= np.uint64(la)
        hna -= la
        hb <<= np.uint64(lb)
        hnb -= lb
        tail_a, ta, tna, twa = take(tails, ta, tna, twa, w, sh, ub)
        tail_b, tb, tnb, twb = take(tails, tb, tnb, twb, w, sh, ub)
        row_a[j] = np.uint32(np.uint64(head_a) | ((tail_a >> top) << np.uint64(31))
                             | ((tail_a & mmask) << uz))
        row_b[j] = np.uint32(np.uint64(head_b) | ((tail_b >> top) << np.uint64(31))
                             | ((tail_b & mmask) << uz))
    return ha, hna, hwa, hb, hnb, hwb, ta, tna, twa, tb, tnb, twb


@jit(parallel=True)
def rows_to_bits(words, block_bits, tails, w, z, t, lut_len, lut_val, limit, base, omega, r0,
                 out):  # pragma: no cover - compiled
    """out (rows, n) uint32 = the bit patterns of rows ``r0 .. r0 + rows - 1`` (``r0`` a
    multiple of ``BLOCK``). Blocks go in pairs (in parallel), the two blocks of a pair
    decoded row by row in one loop."""
    rows, n = out.shape
    b0 = r0 // BLOCK
    for g in prange((rows + 2 * BLOCK - 1) // (2 * BLOCK)):
        ia = 2 * g * BLOCK
        ib = ia + BLOCK
        na = min(BLOCK, rows - ia)
        nb = max(0, min(BLOCK, rows - ib))
        ha, hna, hwa = start(words, block_bits[b0 + 2 * g])
        ta, tna, twa = start(tails, np.int64(r0 + ia) * n * w)
        if nb:
            hb, hnb, hwb = start(words, block_bits[b0 + 2 * g + 1])
            tb, tnb, twb = start(tails, np.int64(r0 + ib) * n * w)
            for i in range(nb):
                ha, hna, hwa, hb, hnb, hwb, ta, tna, twa, tb, tnb, twb = _decode_two_rows(
                    words, ha, hna, hwa, hb, hnb, hwb, tails, ta, tna, twa, tb, tnb, twb, w,
                    z, t, lut_len, lut_val, limit, base, omega, out[ia + i], out[ib + i])
        for i in range(nb, na):
            ha, hna, hwa, ta, tna, twa = _decode_row(words, ha, hna, hwa, tails, ta, tna, twa,
                                                     w, z, t, lut_len, lut_val, limit, base,
                                                     omega, out[ia + i])


@inline
def _dot(vals, x):  # pragma: no cover - compiled
    """``vals @ x`` in float32 with four accumulators."""
    n = x.shape[0]
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    j = 0
    while j + 4 <= n:
        a0 += vals[j] * x[j]
        a1 += vals[j + 1] * x[j + 1]
        a2 += vals[j + 2] * x[j + 2]
        a3 += vals[j + 3] * x[j + 3]
        j += 4
    while j < n:
        a0 += vals[j] * x[j]
        j += 1
    return (a0 + a1) + (a2 + a3)


@jit(parallel=True)
def float_matvec(words, block_bits, tails, w, z, t, lut_len, lut_val, limit, base, omega, x,
                 y):  # pragma: no cover - compiled
    """y (m,) = W @ x (n,): blocks in pairs (in parallel); a pair decodes one row of
    each block at a time into two row buffers (as ``rows_to_bits``) and dots them with
    ``x``."""
    m = y.shape[0]
    n = x.shape[0]
    for g in prange((m + 2 * BLOCK - 1) // (2 * BLOCK)):
        ia = 2 * g * BLOCK
        ib = ia + BLOCK
        na = min(BLOCK, m - ia)
        nb = max(0, min(BLOCK, m - ib))
        buf = np.empty((2, n), np.uint32)
        vals = buf.view(np.float32)
        ha, hna, hwa = start(words, block_bits[2 * g])
        ta, tna, twa = start(tails, np.int64(ia) * n * w)
        if nb:
            hb, hnb, hwb = start(words, block_bits[2 * g + 1])
            tb, tnb, twb = start(tails, np.int64(ib) * n * w)
            for i in range(nb):
                ha, hna, hwa, hb, hnb, hwb, ta, tna, twa, tb, tnb, twb = _decode_two_rows(
                    words, ha, hna, hwa, hb, hnb, hwb, tails, ta, tna, twa, tb, tnb, twb, w,
                    z, t, lut_len, lut_val, limit, base, omega, buf[0], buf[1])
                y[ia + i] = _dot(vals[0], x)
                y[ib + i] = _dot(vals[1], x)
        for i in range(nb, na):
            ha, hna, hwa, ta, tna, twa = _decode_row(words, ha, hna, hwa, tails, ta, tna, twa,
                                                     w, z, t, lut_len, lut_val, limit, base,
                                                     omega, buf[0])
            y[ia + i] = _dot(vals[0], x)


@jit
def native_steps(lengths, starts, t):  # pragma: no cover - compiled
    """What the native decoder does on code lengths ``lengths`` (one per entry, in stream
    order; blocks start at ``starts``, ``starts[-1]`` = the entry count) with a ``t``-bit
    table of one or two codes: (table lookups, codes longer than ``t``, their ``limit``
    comparisons). A lookup takes two codes when both fit in its ``t`` bits."""
    steps = np.int64(0)
    long = np.int64(0)
    cmp = np.int64(0)
    for b in range(starts.shape[0] - 1):
        i = starts[b]
        while i < starts[b + 1]:
            ln = np.int64(lengths[i])
            steps += 1
            if ln > t:
                long += 1
                cmp += ln - t
                i += 1
            elif i + 1 < starts[b + 1] and ln + lengths[i + 1] <= t:
                i += 2
            else:
                i += 1
    return steps, long, cmp
