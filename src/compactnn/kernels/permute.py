"""Seeded permutations and permuted-sequence (``permseq``) kernels.

Seeded permutations are part of the ``permseq`` and ``blockdiag`` file formats (a
layer stores a seed instead of its permutations), so the generator is specified
here exactly and does not depend on numpy's ``Generator`` streams, which may change
between numpy versions:

- ``mix64`` is the splitmix64 finaliser (all arithmetic modulo 2**64).
- Row ``i`` of stream ``s`` starts from state
  ``mix64(mix64(seed) ^ mix64((s << 32) + i + 1))``.
- Fisher-Yates from the end: for ``t = n-1 .. 1``: ``state += GAMMA``,
  ``j = mix64(state) % (t + 1)``, swap ``p[t]`` and ``p[j]``, starting from
  ``p = 0 .. n-1``.

Permuted-sequence arrays: ``base`` float32 (G, n); ``group`` unsigned (m,) the base
sequence of each row; ``perm`` unsigned (m, n) with ``W[i, perm[i, k]] =
base[group[i], k]``. Cost: matvec O(m n); decode O(rows * n).
"""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import jit, prange

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_ONE = np.uint64(1)


@jit
def mix64(z):  # pragma: no cover - compiled
    """splitmix64 finaliser of a uint64."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit(parallel=True)
def fill_seeded_permutations(seed, stream, out):  # pragma: no cover - compiled
    """Fill every row of ``out`` (count, n) (unsigned, holds n-1) with the seeded
    permutation of row index ``i`` of ``stream``; ``seed``, ``stream`` are uint64."""
    count, n = out.shape
    s0 = mix64(seed)
    hi = stream << _S32
    for i in prange(count):
        state = mix64(s0 ^ mix64(hi + np.uint64(i) + _ONE))
        row = out[i]
        for j in range(n):
            row[j] = j
        for t in range(n - 1, 0, -1):
            state += GAMMA
            j = np.int64(mix64(state) % np.uint64(t + 1))
            tmp = row[t]
            row[t] = row[j]
            row[j] = tmp


@jit(parallel=True)
def permseq_matvec(base, group, perm, x, y):  # pragma: no cover - compiled
    """y (m,) = W @ x (n,) with ``W[i, perm[i, k]] = base[group[i], k]``; four
    independent accumulators per row."""
    m, n = perm.shape
    for i in prange(m):
        b = base[group[i]]
        p = perm[i]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        k = 0
        while k + 4 <= n:
            a0 += b[k] * x[p[k]]
            a1 += b[k + 1] * x[p[k + 1]]
            a2 += b[k + 2] * x[p[k + 2]]
            a3 += b[k + 3] * x[p[k + 3]]
            k += 4
        while k < n:
            a0 += b[k] * x[p[k]]
            k += 1
        y[i] = (a0 + a1) + (a2 + a3)


@jit(parallel=True)
def permseq_decode(base, group, perm, r0, out):  # pragma: no cover - compiled
    """Write rows ``r0 .. r0 + out.shape[0]`` of W into ``out`` (rows, n)."""
    rows, n = out.shape
    for i in prange(rows):
        b = base[group[r0 + i]]
        p = perm[r0 + i]
        o = out[i]
        for k in range(n):
            o[p[k]] = b[k]
