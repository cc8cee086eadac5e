"""CSR kernels (the baseline the low-entropy formats are compared against).

Arrays: ``data`` float32 (nnz,), ``indices`` unsigned (nnz,) column of each entry,
``indptr`` unsigned (m+1,) start of each row. Cost: matvec O(nnz + m), matmul
O(nnz * b + m * b).
"""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import jit, prange


@jit(parallel=True)
def csr_matvec(data, indices, indptr, x, y):  # pragma: no cover - compiled
    """y (m,) = W @ x (n,). Four independent accumulators per row."""
    m = indptr.shape[0] - 1
    for r in prange(m):
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        j = np.int64(indptr[r])
        end = np.int64(indptr[r + 1])
        while j + 4 <= end:
            a0 += data[j] * x[indices[j]]
            a1 += data[j + 1] * x[indices[j + 1]]
            a2 += data[j + 2] * x[indices[j + 2]]
            a3 += data[j + 3] * x[indices[j + 3]]
            j += 4
        while j < end:
            a0 += data[j] * x[indices[j]]
            j += 1
        y[r] = (a0 + a1) + (a2 + a3)


@jit(parallel=True)
def csr_matmul(data, indices, indptr, X, Y):  # pragma: no cover - compiled
    """Y (m, b) = W @ X (n, b); rows of X are contiguous."""
    m = indptr.shape[0] - 1
    b = X.shape[1]
    for r in prange(m):
        acc = np.zeros(b, dtype=np.float32)
        for j in range(np.int64(indptr[r]), np.int64(indptr[r + 1])):
            v = data[j]
            xr = X[indices[j]]
            for k in range(b):
                acc[k] += v * xr[k]
        Y[r] = acc


@jit(parallel=True)
def csr_to_dense(data, indices, indptr, out):  # pragma: no cover - compiled
    """Scatter the entries into ``out`` (m, n), which must be zero-filled."""
    m = indptr.shape[0] - 1
    for r in prange(m):
        for j in range(np.int64(indptr[r]), np.int64(indptr[r + 1])):
            out[r, indices[j]] = data[j]
