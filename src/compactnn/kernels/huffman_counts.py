"""Operation counts of the native Huffman kernels (``csrc/huffman.c``) for ``cost()``.

Walks a validated HAM/sHAM stream with the schedule of the native kernel that runs
and counts what it does; nothing is multiplied. ``bits`` is the stream as one uint8
per bit (MSB-first, :func:`stream_bits`, 128 zero bits appended so a 64-bit window
anywhere below the stream's end is in bounds); ``limit``/``base`` are the canonical
search arrays of :func:`compactnn.coding.huffman.decode_tables`; ``lmax`` the longest
code. Counts (int64 array of ``NCOUNTS``): ``PEEK`` 64-bit window reads of the
stream, ``TAB`` table lookups, ``MUL`` multiply-adds, ``XREAD`` reads of x, ``COL``
reads of stored column indices, ``ESC`` canonical searches (each: one more window,
one ``base`` and one codebook read), ``LIMIT`` reads of ``limit``, ``PAIR`` lookups
that decoded two codes, ``ROWS`` row-pointer reads, ``TAB2`` the lookups (of ``TAB``)
made by a two-code step (which loads both codes' fields).
"""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import jit

__all__ = [
    "COL", "ESC", "LIMIT", "MUL", "NCOUNTS", "PAIR", "PEEK", "ROWS", "TAB", "TAB2", "XREAD",
    "plain_walk", "sparse_fused", "stream_bits", "zrun_fused", "zrun_walk",
]

PEEK, TAB, MUL, XREAD, COL, ESC, LIMIT, PAIR, ROWS, TAB2 = range(10)
NCOUNTS = 10

T = 11  # CNN_HUFF_T: plain / record table index bits
ZT1 = 12  # CNN_HUFF_ZT + 1: fused zero-run table window
ZSKIP = 57 - ZT1  # longest zero run one fused step skips
ZMAX = 57 - T  # longest zero run one record step skips
NS = 8  # rows per fused zero-run loop (ZF_NS)
PS = 6  # rows per fused sparse loop (PF_NS)


def stream_bits(words: np.ndarray) -> np.ndarray:
    """The MSB-first uint32 stream as one uint8 per bit, plus 128 zero bits."""
    b = np.unpackbits(words.astype(">u4").view(np.uint8))
    return np.concatenate([b, np.zeros(128, np.uint8)])


@jit
def _lz(bits, p):  # pragma: no cover - compiled
    """Leading zeros of the 64-bit window at p with its last bit set (``clz(w | 1)``)."""
    z = 0
    while z < 63 and bits[p + z] == 0:
        z += 1
    return z


@jit
def _code_len(bits, q, lmax, limit):  # pragma: no cover - compiled
    """Length of the canonical code at bit q (the limit search over 32 bits)."""
    pk = np.uint64(0)
    for i in range(32):
        pk = (pk << np.uint64(1)) | np.uint64(bits[q + i])
    ln = 1
    while ln <= lmax and pk >= limit[ln]:
        ln += 1
    return ln


@jit
def _search(c, ln):  # pragma: no cover - compiled
    """Count one canonical search (``slow1``, from length T + 1) of a code of ln bits."""
    c[ESC] += 1
    c[PEEK] += 1
    c[LIMIT] += ln - T if ln < 32 else 32 - (T + 1)


@jit
def zrun_fused(bits, row_bits, lmax, limit, pair, esc):  # pragma: no cover - compiled
    """The fused zero-run matvec (``zfused_*``: HAM batch 1); ``pair``: two codes per
    lookup (x86 levels, complete codes of <= 12 bits, >= 20% non-zeros); ``esc``: the
    variant that tests for codes longer than the fused table."""
    c = np.zeros(NCOUNTS, np.int64)
    m = row_bits.shape[0] - 1
    mm = ZSKIP + max(ZT1, lmax)
    p = np.zeros(NS, np.int64)
    e = np.zeros(NS, np.int64)
    for r in range(0, m, NS):
        for s in range(NS):
            rr = min(r + s, m - 1)
            p[s] = row_bits[rr]
            e[s] = row_bits[rr + 1]
        c[ROWS] += 2 * NS
        while True:
            left = (e - p).min() - (ZSKIP + ZT1)
            if left < 0:
                break
            for _ in range(left // mm + 1):
                for s in range(NS):
                    c[PEEK] += 1
                    z = _lz(bits, p[s])
                    if z > ZSKIP:
                        p[s] += ZSKIP
                        continue
                    q = p[s] + z
                    c[TAB] += 1
                    ln = _code_len(bits, q, lmax, limit)
                    if esc and ln > ZT1:
                        _search(c, ln)
                        c[MUL] += 1
                        p[s] = q + ln
                        continue
                    p[s] = q + ln
                    if pair:
                        c[TAB2] += 1
                        c[MUL] += 2  # val2 * x also when the lookup held one code
                        z2 = 0
                        while z2 < ZT1 - ln and bits[q + ln + z2] == 0:
                            z2 += 1
                        if z2 < ZT1 - ln:
                            l2 = _code_len(bits, q + ln + z2, lmax, limit)
                            if ln + z2 + l2 <= ZT1:
                                c[PAIR] += 1
                                p[s] = q + ln + z2 + l2
                    else:
                        c[MUL] += 1
        more = True
        while more:
            more = False
            for s in range(NS):
                if p[s] >= e[s]:
                    continue
                more = True
                c[PEEK] += 1
                z = _lz(bits, p[s])
                q = p[s] + z
                if z > ZSKIP:
                    p[s] += ZSKIP
                elif q >= e[s]:
                    p[s] = e[s]
                else:
                    c[TAB] += 1
                    ln = _code_len(bits, q, lmax, limit)
                    if ln > ZT1:
                        _search(c, ln)
                    c[MUL] += 1
                    p[s] = q + ln
    c[XREAD] = c[MUL]
    return c


@jit
def sparse_fused(bits, row_bits, row_ptr, lmax, limit, esc):  # pragma: no cover - compiled
    """The fused sparse matvec (``pfused_*``: sHAM batch 1, every level): lookups of the
    11-bit two-code table while every row of the 6 has two codes left, then one code a
    step; ``esc``: codes longer than 11 bits or an incomplete code."""
    c = np.zeros(NCOUNTS, np.int64)
    m = row_bits.shape[0] - 1
    p = np.zeros(PS, np.int64)
    k = np.zeros(PS, np.int64)
    ke = np.zeros(PS, np.int64)
    for r in range(0, m, PS):
        for s in range(PS):
            rr = min(r + s, m - 1)
            p[s] = row_bits[rr]
            k[s] = row_ptr[rr]
            ke[s] = row_ptr[rr + 1]
        c[ROWS] += 3 * PS
        while True:
            left = (ke - k).min()
            if left < 2:
                break
            for _ in range(left // 2):
                for s in range(PS):
                    c[PEEK] += 1
                    c[TAB] += 1
                    ln = _code_len(bits, p[s], lmax, limit)
                    if esc and ln > T:
                        _search(c, ln)
                        c[MUL] += 1
                        c[COL] += 1
                        p[s] += ln
                        k[s] += 1
                        continue
                    c[TAB2] += 1
                    c[MUL] += 2
                    c[COL] += 2
                    l2 = _code_len(bits, p[s] + ln, lmax, limit)
                    if ln + l2 <= T:
                        c[PAIR] += 1
                        p[s] += ln + l2
                        k[s] += 2
                    else:
                        p[s] += ln
                        k[s] += 1
        more = True
        while more:
            more = False
            for s in range(PS):
                if k[s] >= ke[s]:
                    continue
                more = True
                c[PEEK] += 1
                c[TAB] += 1
                ln = _code_len(bits, p[s], lmax, limit)
                if ln > T:
                    _search(c, ln)
                c[MUL] += 1
                c[COL] += 1
                p[s] += ln
                k[s] += 1
    c[XREAD] = c[MUL]
    return c


@jit
def plain_walk(bits, row_bits, counts, lmax, limit):  # pragma: no cover - compiled
    """Symbol decoding of every row (``dec_plain1``): a lookup of the 11-bit table
    takes two codes when both fit and two are left, one otherwise."""
    c = np.zeros(NCOUNTS, np.int64)
    m = row_bits.shape[0] - 1
    for r in range(m):
        p = row_bits[r]
        left = counts[r]
        c[ROWS] += 2
        while left > 0:
            c[PEEK] += 1
            c[TAB] += 1
            ln = _code_len(bits, p, lmax, limit)
            if ln > T:
                _search(c, ln)
                p += ln
                left -= 1
                continue
            p += ln
            left -= 1
            if left > 0:
                l2 = _code_len(bits, p, lmax, limit)
                if ln + l2 <= T:
                    c[PAIR] += 1
                    p += l2
                    left -= 1
    return c


@jit
def zrun_walk(bits, row_bits, n, lmax, limit):  # pragma: no cover - compiled
    """Record decoding of every row in zero-run mode (``dec_zrun1``): a count of
    leading zeros skips up to 46 zero entries, a lookup of the 11-bit table after the
    run gives the non-zero code and, when it fits, a zero run and a second code."""
    c = np.zeros(NCOUNTS, np.int64)
    m = row_bits.shape[0] - 1
    for r in range(m):
        p = row_bits[r]
        j = 0
        c[ROWS] += 2
        while j < n:
            c[PEEK] += 1
            z = _lz(bits, p)
            if z > ZMAX:
                if j + ZMAX >= n:
                    break
                p += ZMAX
                j += ZMAX
                continue
            if j + z >= n:
                break
            j += z
            p += z
            c[TAB] += 1
            ln = _code_len(bits, p, lmax, limit)
            if ln > T:
                _search(c, ln)
                p += ln
                j += 1
                continue
            z2 = 0
            while z2 < T - ln and bits[p + ln + z2] == 0:
                z2 += 1
            two = False
            if z2 < T - ln:
                l2 = _code_len(bits, p + ln + z2, lmax, limit)
                if ln + z2 + l2 <= T and j + z2 + 1 < n:
                    two = True
                    c[PAIR] += 1
                    p += ln + z2 + l2
                    j += z2 + 2
            if not two:
                p += ln
                j += 1
    return c
