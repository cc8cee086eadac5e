"""Table-driven canonical Huffman decoding inside the HAM and sHAM products (the numba
path: the native kernels in ``csrc/huffman.c`` run instead when the extension is
active and K <= 256).

Common arguments: ``words`` uint32 MSB-first stream with padding (see
:mod:`compactnn.kernels.bitpack`); ``row_bits`` int64 (m+1,) bit offset of each row;
the decoding cache of :func:`compactnn.coding.huffman.decode_tables`: ``t`` LUT index
bits, ``lut_len`` uint8 (2**t,) code length or ``ESCAPE`` (255), ``lut_val`` float32
(2**t,) decoded value, ``limit`` uint64 (34,) left-justified exclusive bound of the
codes of at most ``l`` bits, ``base`` int64 (34,) with symbol = ``(peek >> (32 - l)) -
base[l]``; ``omega`` float32 (K,) symbols in canonical order.

Decoding keeps a 64-bit bit buffer per row (the next stream bits, left-aligned), refills
it with one word whenever fewer than 32 bits are buffered, indexes the LUT with the
top ``t`` bits and, for codes longer than ``t``, searches ``limit`` upwards. Rows start
at ``row_bits[r]`` and are independent: kernels are parallel over rows, and the
matvecs decode two rows in one loop so that two dependency chains overlap.

HAM's ``zrun`` mode (symbol 0 is +0.0 with the 1-bit code ``0``): a run of zero
entries is a run of 0 bits, skipped with one count-leading-zeros; only the non-zero
entries are looked up and multiplied. Products assume a validated stream
(``huffman_scan`` found no error), so they never read past the padding word.
Cost: one LUT lookup and one multiply-add per coded entry (HAM: m*n, or in ``zrun``
mode the entries that are not +0.0, plus one count-leading-zeros per run of zeros or
buffer refill; sHAM: nnz).
"""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import deferred, inline, jit, prange
from compactnn.kernels.bitpack import peek32, refill, start

ESCAPE = 255
_U32 = np.uint64(32)


def _clz64_py(v):
    """Leading zero bits of a 64-bit unsigned integer."""
    return np.uint64(64 - int(v).bit_length())


def _clz64():
    """LLVM ``ctlz`` as a numba intrinsic (plain Python under ``NUMBA_DISABLE_JIT``)."""
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    if numba.config.DISABLE_JIT:  # pragma: no cover - plain-Python mode
        return _clz64_py

    @intrinsic
    def clz64(typingctx, v):  # pragma: no cover - compiled
        """Leading zero bits of a 64-bit unsigned integer (LLVM ``ctlz``)."""
        if v != types.uint64:
            return None

        def codegen(context, builder, sig, args):
            return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 0))

        return types.uint64(types.uint64), codegen

    return clz64


clz64 = deferred(_clz64)


@inline
def lookup(peek, t, lut_len, lut_val, limit, base, omega):  # pragma: no cover - compiled
    """Value and length of the code that the 32-bit ``peek`` starts with."""
    i = peek >> np.uint64(32 - t)
    ln = np.int64(lut_len[i])
    if ln != ESCAPE:
        return lut_val[i], ln
    ln = t + 1
    while peek >= limit[ln]:
        ln += 1
    return omega[np.int64(peek >> np.uint64(32 - ln)) - base[ln]], ln


@inline
def next_value(
    words, buf, nb, wi, t, lut_len, lut_val, limit, base, omega
):  # pragma: no cover - compiled
    """Decode one code from the bit buffer."""
    buf, nb, wi = refill(words, buf, nb, wi)
    v, ln = lookup(buf >> _U32, t, lut_len, lut_val, limit, base, omega)
    return buf << np.uint64(ln), nb - ln, wi, v


@inline
def ham_next(
    words, buf, nb, wi, j, n, zrun, t, lut_len, lut_val, limit, base, omega
):  # pragma: no cover - compiled
    """Advance a HAM row to its next entry to multiply: returns the buffer, the
    entry's column ``j`` and value, or ``j == n`` when the row is done. In ``zrun``
    mode zero codes (bit 0) are skipped first. A lookup on fewer than 32 buffered
    bits is valid when the code found fits in them (the code is prefix-free and the
    buffer's low bits are zero), otherwise it is redone after a refill."""
    while True:
        buf, nb, wi = refill(words, buf, nb, wi)
        if zrun:
            z = np.int64(clz64(buf))
            if z >= nb or z >= n - j:  # the zeros reach the buffer's or the row's end
                z = min(z, nb, n - j)
                buf <<= np.uint64(z)
                nb -= z
                j += z
                if j >= n:
                    return buf, nb, wi, j, np.float32(0.0)
                continue
            buf <<= np.uint64(z)
            nb -= z
            j += z
        v, ln = lookup(buf >> _U32, t, lut_len, lut_val, limit, base, omega)
        if ln > nb:
            buf, nb, wi = refill(words, buf, nb, wi)
            v, ln = lookup(buf >> _U32, t, lut_len, lut_val, limit, base, omega)
        return buf << np.uint64(ln), nb - ln, wi, j, v


@jit
def code_lengths_sorted(a):  # pragma: no cover - compiled
    """In place: Huffman code lengths for the int64 weights ``a`` sorted ascending
    (n >= 2). Moffat & Katajainen, "In-place calculation of minimum-redundancy codes"
    (WADS 1995): O(n), no heap. Afterwards ``a[i]`` is the length for weight ``i``."""
    n = a.shape[0]
    a[0] += a[1]
    root = 0
    leaf = 2
    for nxt in range(1, n - 1):  # first pass: internal node weights, parent pointers
        if leaf >= n or a[root] < a[leaf]:
            a[nxt] = a[root]
            a[root] = nxt
            root += 1
        else:
            a[nxt] = a[leaf]
            leaf += 1
        if leaf >= n or (root < nxt and a[root] < a[leaf]):
            a[nxt] += a[root]
            a[root] = nxt
            root += 1
        else:
            a[nxt] += a[leaf]
            leaf += 1
    a[n - 2] = 0  # second pass: depths of the internal nodes
    for nxt in range(n - 3, -1, -1):
        a[nxt] = a[a[nxt]] + 1
    avbl = 1  # third pass: depths of the leaves
    used = 0
    depth = 0
    root = n - 2
    nxt = n - 1
    while avbl > 0:
        while root >= 0 and a[root] == depth:
            used += 1
            root -= 1
        while avbl > used:
            a[nxt] = depth
            nxt -= 1
            avbl -= 1
        avbl = 2 * used
        depth += 1
        used = 0


@jit(parallel=True)
def huffman_scan(
    words, row_bits, row_ptr, t, lmax, lut_len, limit, err, stats
):  # pragma: no cover - compiled
    """Validation pass: decode ``row_ptr[r+1] - row_ptr[r]`` codes from each row's bits.

    ``err[r]`` (int8): 0 ok, 1 an unused code prefix, 2 the codes run past
    ``row_bits[r+1]``, 3 bits left over after the last code. ``stats[r]`` (int64, 3):
    codes longer than ``t`` bits, the ``limit`` comparisons their search makes, and
    codes of symbol 0 (for the cost model). Requires ``row_bits`` non-decreasing from
    0 with its last entry covered by ``words`` and the padding; every read is a 64-bit
    window at a position <= the row's end, and each code consumes its length, so the
    pass ends after at most ``row_ptr[-1]`` codes.
    """
    m = row_bits.shape[0] - 1
    for r in prange(m):
        p = row_bits[r]
        end = row_bits[r + 1]
        e = 0
        nl = 0
        nc = 0
        nz = 0
        for _ in range(row_ptr[r + 1] - row_ptr[r]):
            peek = peek32(words, p)
            i = peek >> np.uint64(32 - t)
            ln = np.int64(lut_len[i])
            if ln == ESCAPE:
                ln = t + 1
                while peek >= limit[ln]:
                    ln += 1
                if ln > lmax:
                    e = 1
                    break
                nl += 1
                nc += ln - t
            if p + ln > end:
                e = 2
                break
            if peek >> np.uint64(32 - ln) == 0:  # the all-zero code is symbol 0
                nz += 1
            p += ln
        if e == 0 and p != end:
            e = 3
        err[r] = e
        stats[r, 0] = nl
        stats[r, 1] = nc
        stats[r, 2] = nz


@jit(parallel=True)
def ham_matvec(
    words, row_bits, zrun, t, lut_len, lut_val, limit, base, omega, x, y
):  # pragma: no cover - compiled
    """y (m,) = W @ x (n,) for HAM: row r holds n codes from ``row_bits[r]``; rows
    2g and 2g+1 are decoded in one loop."""
    m = y.shape[0]
    n = x.shape[0]
    for g in prange((m + 1) // 2):
        r0 = 2 * g
        r1 = min(r0 + 1, m - 1)
        b0, n0, w0 = start(words, row_bits[r0])
        b1, n1, w1 = start(words, row_bits[r1])
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        j0 = 0
        j1 = 0
        while j0 < n and j1 < n:
            b0, n0, w0, j0, v0 = ham_next(words, b0, n0, w0, j0, n, zrun, t, lut_len,
                                          lut_val, limit, base, omega)
            b1, n1, w1, j1, v1 = ham_next(words, b1, n1, w1, j1, n, zrun, t, lut_len,
                                          lut_val, limit, base, omega)
            if j0 < n:
                a0 += v0 * x[j0]
                j0 += 1
            if j1 < n:
                a1 += v1 * x[j1]
                j1 += 1
        while j0 < n:
            b0, n0, w0, j0, v0 = ham_next(words, b0, n0, w0, j0, n, zrun, t, lut_len,
                                          lut_val, limit, base, omega)
            if j0 < n:
                a0 += v0 * x[j0]
                j0 += 1
        while j1 < n:
            b1, n1, w1, j1, v1 = ham_next(words, b1, n1, w1, j1, n, zrun, t, lut_len,
                                          lut_val, limit, base, omega)
            if j1 < n:
                a1 += v1 * x[j1]
                j1 += 1
        y[r1] = a1
        y[r0] = a0


@jit(parallel=True)
def ham_matmul(
    words, row_bits, zrun, t, lut_len, lut_val, limit, base, omega, X, Y
):  # pragma: no cover - compiled
    """Y (m, k) = W @ X (n, k) for HAM; entries that decode to zero skip their row of X."""
    m = Y.shape[0]
    n = X.shape[0]
    k = X.shape[1]
    for r in prange(m):
        acc = np.zeros(k, dtype=np.float32)
        buf, nb, wi = start(words, row_bits[r])
        j = 0
        while j < n:
            buf, nb, wi, j, v = ham_next(words, buf, nb, wi, j, n, zrun, t, lut_len, lut_val,
                                         limit, base, omega)
            if j < n:
                if v != 0:
                    xr = X[j]
                    for c in range(k):
                        acc[c] += v * xr[c]
                j += 1
        Y[r] = acc


@jit(parallel=True)
def ham_to_dense(
    words, row_bits, zrun, t, lut_len, lut_val, limit, base, omega, out
):  # pragma: no cover - compiled
    """out (m, n), zero-filled: every decoded entry (in ``zrun`` mode the +0.0
    entries are left as they are)."""
    m, n = out.shape
    for r in prange(m):
        buf, nb, wi = start(words, row_bits[r])
        j = 0
        while j < n:
            buf, nb, wi, j, v = ham_next(words, buf, nb, wi, j, n, zrun, t, lut_len, lut_val,
                                         limit, base, omega)
            if j < n:
                out[r, j] = v
                j += 1


@jit(parallel=True)
def sham_matvec(
    words, row_bits, col_idx, row_ptr, t, lut_len, lut_val, limit, base, omega, x, y
):  # pragma: no cover - compiled
    """y (m,) = W @ x (n,) for sHAM: row r has codes for entries
    ``row_ptr[r]..row_ptr[r+1]`` at columns ``col_idx``; rows 2g and 2g+1 are decoded
    in one loop."""
    m = y.shape[0]
    for g in prange((m + 1) // 2):
        r0 = 2 * g
        r1 = min(r0 + 1, m - 1)
        b0, n0, w0 = start(words, row_bits[r0])
        b1, n1, w1 = start(words, row_bits[r1])
        j0 = row_ptr[r0]
        j1 = row_ptr[r1]
        e0 = row_ptr[r0 + 1]
        e1 = row_ptr[r1 + 1]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        for _ in range(min(e0 - j0, e1 - j1)):
            b0, n0, w0, v0 = next_value(words, b0, n0, w0, t, lut_len, lut_val, limit, base,
                                        omega)
            b1, n1, w1, v1 = next_value(words, b1, n1, w1, t, lut_len, lut_val, limit, base,
                                        omega)
            a0 += v0 * x[col_idx[j0]]
            a1 += v1 * x[col_idx[j1]]
            j0 += 1
            j1 += 1
        while j0 < e0:
            b0, n0, w0, v0 = next_value(words, b0, n0, w0, t, lut_len, lut_val, limit, base,
                                        omega)
            a0 += v0 * x[col_idx[j0]]
            j0 += 1
        while j1 < e1:
            b1, n1, w1, v1 = next_value(words, b1, n1, w1, t, lut_len, lut_val, limit, base,
                                        omega)
            a1 += v1 * x[col_idx[j1]]
            j1 += 1
        y[r1] = a1
        y[r0] = a0


@jit(parallel=True)
def sham_matmul(
    words, row_bits, col_idx, row_ptr, t, lut_len, lut_val, limit, base, omega, X, Y
):  # pragma: no cover - compiled
    """Y (m, k) = W @ X (n, k) for sHAM."""
    m = Y.shape[0]
    k = X.shape[1]
    for r in prange(m):
        acc = np.zeros(k, dtype=np.float32)
        buf, nb, wi = start(words, row_bits[r])
        for j in range(row_ptr[r], row_ptr[r + 1]):
            buf, nb, wi, v = next_value(words, buf, nb, wi, t, lut_len, lut_val, limit, base,
                                        omega)
            xr = X[col_idx[j]]
            for c in range(k):
                acc[c] += v * xr[c]
        Y[r] = acc


@jit(parallel=True)
def sham_to_dense(
    words, row_bits, col_idx, row_ptr, t, lut_len, lut_val, limit, base, omega, out
):  # pragma: no cover - compiled
    """Scatter the decoded entries into ``out`` (m, n), which must be zero-filled."""
    m = out.shape[0]
    for r in prange(m):
        buf, nb, wi = start(words, row_bits[r])
        for j in range(row_ptr[r], row_ptr[r + 1]):
            buf, nb, wi, v = next_value(words, buf, nb, wi, t, lut_len, lut_val, limit, base,
                                        omega)
            out[r, col_idx[j]] = v
