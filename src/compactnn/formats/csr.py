"""``csr``: compressed sparse rows, the classic baseline.

Byte layout: ``data`` float32 (nnz,) the entries whose bit pattern is not +0.0, row by
row, ascending column; ``indices`` (nnz,) their columns, smallest unsigned type that
holds n-1; ``indptr`` (m+1,) start of each row in ``data``, smallest unsigned type
that holds nnz. ``-0.0`` is stored as an entry so the round trip is bit-exact.

Products run on the native kernels (``kernels/csrc/sparse.c``; the numba kernels of
``kernels/csr.py`` when the native path is off), reading the stored arrays in place
(column indices at their stored width; ``indptr`` copied to int64, ``m + 1``
entries). Batch 1: per row, eight column indices come from one 64-bit load, their
inputs are loaded one by one into a SIMD register and multiplied with eight stored
values in one FMA (on AMD Zen 4 an AVX-512 or AVX2 gather measured slower than
these scalar loads: 3.3 vs 5.5 G entries/s). Batched (``W @ X`` and ``X @ Wᵀ``, which
transposes ``X`` and the result around the same kernel): per row and block of up to
64 columns, each entry's value is broadcast and multiplied into the matching row of
``X`` with register accumulators, four entries in flight, so each entry is decoded
once per block of 64 inputs.

On AVX-512 CPUs, when ``data`` holds at most 32 bit patterns (shared values), the
kernel object also builds the sliced codebook layout at load (never stored; 16-row
slices x 32-column blocks, inputs and values picked from registers by permutes:
docs/architecture/kernels.md), and batch 1 runs on it at the AVX-512 level.

Cost of ``W @ x`` (:meth:`CSR.cost`): nnz multiplies and adds; reads ``data``,
``indices`` and ``x`` nnz times each (``x`` gathered), ``indptr`` m+1 times; writes
``y`` m times. A batch of ``b`` multiplies the arithmetic, the ``x`` reads and the
``y`` writes by ``b``; the native kernels read ``data`` and ``indices`` once per 64
inputs, the numba kernel once (``cost(batch, backend)``).
"""

from __future__ import annotations

import numpy as np

from compactnn.coding.codebook import distinct
from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import (
    as_dense_input,
    require_below,
    require_finite,
    require_len,
    require_pointers,
)
from compactnn.formats.dtypes import index_dtype
from compactnn.formats.registry import register
from compactnn.kernels import csr as k
from compactnn.kernels.sliced import COLS, ROWS, VALUES, sliced_steps


def csr_arrays(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, indices, indptr)`` of the entries of ``W`` that are not +0.0, with
    the smallest index dtypes."""
    m, n = W.shape
    flat = np.flatnonzero(W.view(np.uint32))  # one int64 array: no mask, no row array
    data = W.reshape(-1)[flat]
    indptr = np.searchsorted(flat, np.arange(m + 1, dtype=np.int64) * n)  # entries before row r
    np.remainder(flat, max(n, 1), out=flat)
    return (
        data,
        flat.astype(index_dtype(max(n - 1, 0))),
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

    def _native(self):
        """The native kernel object (built on first use; it reads the stored arrays in
        place), or None on the numba path."""
        return self._cached_kernel(lambda nat: nat.CsrMatrix(
            self.data, self.indices, self.indptr, *self.shape))

    def fused_rows(self, batch: int):
        return self._native()

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(x, y, 1, None)
            return
        k.csr_matvec(self.data, self.indices, self.indptr, x, y)

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.matmul(X, Y, X.shape[1])
            return
        k.csr_matmul(self.data, self.indices, self.indptr, X, Y)

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(X, Y, X.shape[0], None)
            return
        super()._rmatmul(X, Y)

    def _check(self) -> None:
        m, n = self.shape
        require_finite("csr", "data", self.data)
        nnz = self.data.shape[0]
        require_len("csr", "indices", self.indices, nnz)
        require_pointers("csr", "indptr", self.indptr, m + 1, nnz)
        require_below("csr", "indices", self.indices, n)

    def _sliced_steps(self) -> int:
        """Steps of the sliced layout the AVX-512 kernel object builds (0: none)."""
        if "_steps" not in self.__dict__:
            m, n = self.shape
            values = distinct(self.data.view(np.uint32))
            self._steps = sliced_steps(np.diff(self.indptr.astype(np.int64)), self.indices,
                                       values, m, n, "csr")
        return self._steps

    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        nnz = self.nnz
        steps = self._sliced_steps() if batch == 1 and backend == "avx512" else 0
        if steps:
            return sliced_cost(steps, m, n)
        c = Cost(adds=nnz, mults=nnz)
        passes = -(-batch // 64) if backend != "numba" else 1  # native: 64 inputs a pass
        c.read("data", nnz * passes, self.data)
        c.read("indices", nnz * passes, self.indices)
        c.read("indptr", m + 1, self.indptr)
        c.read("x", nnz, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)


def sliced_cost(steps: int, m: int, n: int) -> Cost:
    """What the sliced batch-1 kernel does: per step a 16-slot load, the block's 32
    inputs, two permutes and one 16-lane FMA (padding lanes included)."""
    c = Cost(adds=ROWS * steps, mults=ROWS * steps)
    slices = -(-m // ROWS)
    c.read("slots", ROWS * steps, 16, 2 * ROWS * steps)
    c.read("xoff", steps, 32, 4 * steps)
    c.read("slice_ptr", slices + 1, 64, 8 * (slices + 1))
    c.read("lut", VALUES, 32, 4 * VALUES)
    c.read("x", COLS * steps, 32, 4 * n)
    c.write("y", m, 32, 4 * m)
    return c
