"""Kernels shared by the CER and CSER formats (grouped-by-value sparse rows).

Arrays (all index arrays unsigned, any width):

- ``col_idx`` (nnz,): columns of the stored entries, row by row, group by group.
- ``omega_ptr`` (groups+1,): start of each group in ``col_idx``.
- ``row_ptr`` (m+1,): first group of each row in ``omega_ptr``.
- ``omega_idx``: CSER (groups,) the codebook index of each group; CER passes an
  empty array and ``explicit=False``: group ``t`` of a row (counting from 1) has
  code ``t``.
- ``shifted`` float32 (K,): ``omega - omega[0]`` (or ``omega`` when ``omega[0]`` is
  zero); ``base``: ``omega[0] * sum(x)`` (matvec scalar, matmul (b,)), added to every
  row.

A product adds the inputs of each group first and multiplies once per group: matvec
O(nnz + groups + m), matmul O((nnz + groups + m) * b). Rows are independent and summed
in a fixed order, so results do not depend on the thread count or the chunking.
"""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import jit, prange


@jit(parallel=True)
def cer_matvec(
    col_idx, omega_ptr, row_ptr, omega_idx, explicit, shifted, base, x, y, chunks, width,
):  # pragma: no cover - compiled
    """y (m,) = W @ x (n,), branch-free over group boundaries.

    Per row, one pass over all its entries keeps four running sums (entry ``p`` of the
    row goes to sum ``p % 4``) and stores each after its update in a scratch ``T``
    (``T[p + 4]``, four leading zeros). The inputs summed before row position ``e``
    are ``P(e) = T[e+3] + T[e+2] + T[e+1] + T[e]``, so group ``g`` (positions
    ``s..e``) sums to ``P(e) - P(s)`` and the row is ``sum_g shifted[code_g] *
    (P(e_g) - P(s_g)) + base``. This avoids a data-dependent loop per group, whose
    exits mispredict (2-3x slower at ~13 entries per group); the price is summation
    error relative to the row's running sums instead of each group's. ``chunks``
    row ranges each own one scratch of ``width + 4`` floats (``width`` >= the most
    entries in a row). CER padding groups give ``P(e) - P(s) = 0`` exactly.
    """
    m = row_ptr.shape[0] - 1
    per = (m + chunks - 1) // chunks
    for c in prange(chunks):
        T = np.zeros(width + 4, dtype=np.float32)
        for r in range(c * per, min(m, (c + 1) * per)):
            g0 = np.int64(row_ptr[r])
            g1 = np.int64(row_ptr[r + 1])
            j0 = np.int64(omega_ptr[g0])
            j1 = np.int64(omega_ptr[g1])
            t0 = np.float32(0.0)
            t1 = np.float32(0.0)
            t2 = np.float32(0.0)
            t3 = np.float32(0.0)
            i = 4
            j = j0
            while j + 4 <= j1:
                t0 += x[col_idx[j]]
                t1 += x[col_idx[j + 1]]
                t2 += x[col_idx[j + 2]]
                t3 += x[col_idx[j + 3]]
                T[i] = t0
                T[i + 1] = t1
                T[i + 2] = t2
                T[i + 3] = t3
                i += 4
                j += 4
            while j < j1:
                T[i] = T[i - 4] + x[col_idx[j]]
                i += 1
                j += 1
            acc = np.float32(0.0)
            prev = np.float32(0.0)
            off = 4 - j0
            for g in range(g0, g1):
                e = np.int64(omega_ptr[g + 1]) + off
                p = (T[e - 1] + T[e - 2]) + (T[e - 3] + T[e - 4])
                code = np.int64(omega_idx[g]) if explicit else g - g0 + 1
                acc += shifted[code] * (p - prev)
                prev = p
            y[r] = acc + base


@jit(parallel=True)
def cer_matmul(
    col_idx, omega_ptr, row_ptr, omega_idx, explicit, shifted, base, X, Y, chunks,
):  # pragma: no cover - compiled
    """Y (m, b) = W @ X (n, b); rows of X are contiguous. Each group sums its rows of X
    four at a time into a b-length buffer (one per chunk of rows), then adds
    ``value * buffer`` to ``Y[r]``; empty groups are skipped."""
    m = row_ptr.shape[0] - 1
    b = X.shape[1]
    per = (m + chunks - 1) // chunks
    for c in prange(chunks):
        s = np.empty(b, dtype=np.float32)
        for r in range(c * per, min(m, (c + 1) * per)):
            g0 = np.int64(row_ptr[r])
            g1 = np.int64(row_ptr[r + 1])
            for k in range(b):
                Y[r, k] = base[k]
            j = np.int64(omega_ptr[g0])
            for g in range(g0, g1):
                end = np.int64(omega_ptr[g + 1])
                if end > j:
                    ca = col_idx[j]
                    for k in range(b):
                        s[k] = X[ca, k]
                    j += 1
                    while j + 4 <= end:
                        ca = col_idx[j]
                        cb = col_idx[j + 1]
                        cc = col_idx[j + 2]
                        cd = col_idx[j + 3]
                        for k in range(b):
                            s[k] += (X[ca, k] + X[cb, k]) + (X[cc, k] + X[cd, k])
                        j += 4
                    while j < end:
                        ca = col_idx[j]
                        for k in range(b):
                            s[k] += X[ca, k]
                        j += 1
                    code = np.int64(omega_idx[g]) if explicit else g - g0 + 1
                    w = shifted[code]
                    for k in range(b):
                        Y[r, k] += w * s[k]


@jit(parallel=True)
def cer_to_dense(
    col_idx, omega_ptr, row_ptr, omega_idx, explicit, omega, out,
):  # pragma: no cover - compiled
    """Scatter ``omega[code]`` of every group into ``out`` (m, n), which must already
    hold ``omega[0]`` everywhere. O(nnz + groups)."""
    m = row_ptr.shape[0] - 1
    for r in prange(m):
        g0 = np.int64(row_ptr[r])
        for g in range(g0, np.int64(row_ptr[r + 1])):
            code = np.int64(omega_idx[g]) if explicit else g - g0 + 1
            v = omega[code]
            for j in range(np.int64(omega_ptr[g]), np.int64(omega_ptr[g + 1])):
                out[r, col_idx[j]] = v


@jit(parallel=True)
def cer_bad_rows(
    col_idx, omega_ptr, row_ptr, n, chunks, bad,
):  # pragma: no cover - compiled
    """Mark in ``bad`` (m,) each row whose columns are not strictly ascending inside a
    group or repeat across groups. Pointers must be valid and ``col_idx < n``.
    Rows are split into ``chunks`` ranges, each with one n-length scratch that is
    cleared after every row: O(nnz + chunks * n)."""
    m = row_ptr.shape[0] - 1
    per = (m + chunks - 1) // chunks
    for c in prange(chunks):
        seen = np.zeros(n, dtype=np.bool_)
        for r in range(c * per, min(m, (c + 1) * per)):
            ok = True
            for g in range(np.int64(row_ptr[r]), np.int64(row_ptr[r + 1])):
                prev = np.int64(-1)
                for j in range(np.int64(omega_ptr[g]), np.int64(omega_ptr[g + 1])):
                    col = np.int64(col_idx[j])
                    if col <= prev or seen[col]:
                        ok = False
                    seen[col] = True
                    prev = col
            bad[r] = not ok
            for j in range(np.int64(omega_ptr[row_ptr[r]]), np.int64(omega_ptr[row_ptr[r + 1]])):
                seen[col_idx[j]] = False


@jit(parallel=True)
def group_counts(codes, nnz, groups, max_code):  # pragma: no cover
    """Encoder pass 1, per row of ``codes`` ((m, n) codebook indices): the row's number
    of entries with code != 0 (``nnz``), of distinct non-zero codes (``groups``) and its
    largest code (``max_code``)."""
    m, n = codes.shape
    for r in prange(m):
        top = 0
        cnt = 0
        for j in range(n):
            c = codes[r, j]
            if c != 0:
                cnt += 1
                if c > top:
                    top = c
        seen = np.zeros(top + 1, np.bool_)
        g = 0
        for j in range(n):
            c = codes[r, j]
            if c != 0 and not seen[c]:
                seen[c] = True
                g += 1
        nnz[r] = cnt
        groups[r] = g
        max_code[r] = top


@jit(parallel=True)
def group_fill(codes, col_off, grp_off, cer_off, col_idx, sizes, omega_idx,
               cer_sizes):  # pragma: no cover
    """Encoder pass 2, per row: a counting sort of the row's entries by code (stable, so
    columns ascend inside a group) into ``col_idx`` from ``col_off[r]``; the sizes and
    codes of its non-empty groups (CSER) from ``grp_off[r]``; the sizes of its groups
    ``1..max_code`` (CER, empty ones included) from ``cer_off[r]``."""
    m, n = codes.shape
    for r in prange(m):
        top = cer_off[r + 1] - cer_off[r]
        cnt = np.zeros(top + 1, np.int64)
        for j in range(n):
            cnt[codes[r, j]] += 1
        pos = np.empty(top + 1, np.int64)
        p = col_off[r]
        g = grp_off[r]
        for c in range(1, top + 1):
            pos[c] = p
            p += cnt[c]
            cer_sizes[cer_off[r] + c - 1] = cnt[c]
            if cnt[c] != 0:
                sizes[g] = cnt[c]
                omega_idx[g] = c
                g += 1
        for j in range(n):
            c = codes[r, j]
            if c != 0:
                col_idx[pos[c]] = j
                pos[c] += 1
