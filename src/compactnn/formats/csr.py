"""``csr``: compressed sparse rows, the classic baseline.

Byte layout: ``data`` float32 (nnz,) the entries whose bit pattern is not +0.0, row by
row, ascending column; ``indices`` (nnz,) their columns, smallest unsigned type that
holds n-1; ``indptr`` (m+1,) start of each row in ``data``, smallest unsigned type
that holds nnz. ``-0.0`` is stored as an entry so the round trip is bit-exact.
"""

from __future__ import annotations

import numpy as np

from compactnn.formats.base import (
    CompactMatrix,
    Cost,
    as_dense_input,
    index_dtype,
    register,
    require_below,
    require_finite,
    require_len,
    require_pointers,
)
from compactnn.kernels import csr as k


def csr_arrays(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, indices, indptr)`` of the entries of ``W`` that are not +0.0, with
    the smallest index dtypes."""
    m, n = W.shape
    nz = W.view(np.uint32) != 0
    rows, cols = np.nonzero(nz)
    data = W[rows, cols]
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(nz, axis=1), out=indptr[1:])
    return (
        data,
        cols.astype(index_dtype(max(n - 1, 0))),
        indptr.astype(index_dtype(data.size)),
    )


@register
class CSR(CompactMatrix):
    """Compressed sparse rows with narrow index types."""

    format_id = "csr"
    arrays = ("data", "indices", "indptr")
    pointer_arrays = ("indptr",)

    def _index_bounds(self) -> dict[str, int]:
        return {"indices": self.shape[1] - 1}

    @classmethod
    def from_dense(cls, W: np.ndarray) -> CSR:
        W = as_dense_input(W)
        data, indices, indptr = csr_arrays(W)
        return cls(W.shape, data=data, indices=indices, indptr=indptr)

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        if self.nnz:
            k.csr_to_dense(self.data, self.indices, self.indptr, out)
        return out

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        k.csr_matvec(self.data, self.indices, self.indptr, x, y)

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        k.csr_matmul(self.data, self.indices, self.indptr, X, Y)

    def _check(self) -> None:
        m, n = self.shape
        require_finite("csr", "data", self.data)
        nnz = self.data.shape[0]
        require_len("csr", "indices", self.indices, nnz)
        require_pointers("csr", "indptr", self.indptr, m + 1, nnz)
        require_below("csr", "indices", self.indices, n)

    def cost(self) -> Cost:
        m, n = self.shape
        nnz = self.nnz
        c = Cost(adds=nnz, mults=nnz)
        c.read("data", nnz, self.data)
        c.read("indices", nnz, self.indices)
        c.read("indptr", m + 1, self.indptr)
        c.read("x", nnz, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c
