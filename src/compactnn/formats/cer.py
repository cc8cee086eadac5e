"""``cer``: Compressed Entropy Row (Wiedemann, Müller, Samek, IEEE TNNLS 2019).

A low-entropy matrix (few distinct values, one of them dominant) is stored as a
codebook plus, per row, the columns of each value grouped together. Products add the
inputs that meet the same value first and multiply once per group.

Codebook ``omega`` = ``frequency_codebook(W)``: the distinct values by float32 bit
pattern (``-0.0`` differs from ``0.0``), most frequent first, ties by ascending value
then bit pattern. The code of an entry is its index in ``omega``; code 0 (the most
frequent value, usually 0 after pruning) is never stored per position.

Byte layout (index dtypes: the smallest of uint8/16/32/64 that holds the range):

============  ========  ============  ==============================================
array         dtype     length        content
============  ========  ============  ==============================================
``omega``     float32   K             the original distinct values, ``omega[0]`` the
                                      most frequent
``col_idx``   uint      nnz           columns of the entries with code != 0, row by
                                      row; inside a row grouped by code (ascending,
                                      i.e. in ``omega`` order), ascending column
                                      inside a group; dtype holds ``n - 1``
``omega_ptr`` uint      groups + 1    start of each group in ``col_idx`` (last =
                                      nnz); dtype holds nnz
``row_ptr``   uint      m + 1         first group of each row in ``omega_ptr``
                                      (last = groups); dtype holds groups
============  ========  ============  ==============================================

In CER a row whose largest present code is ``K_r`` has exactly ``K_r`` groups, codes
``1..K_r`` in order; group ``t`` holds ``omega[t]`` implicitly and may be empty
(padding). Storage in bits: ``K*32 + nnz*b_col + (groups+1)*b_ptr + (m+1)*b_row``.
The ``cser`` format (``formats/cser.py``) drops the empty groups and stores each
group's code in an extra array ``omega_idx``.

Products: ``y[r] = omega[0]*sum(x) + sum_groups (omega[g]-omega[0]) * sum_{j in g}
x[col_idx[j]]``. The shifted codebook ``omega - omega[0]`` is a runtime cache built in
``_prepare`` (not stored, not counted in ``nbytes``); when ``omega[0]`` is ``+-0.0``
the ``sum(x)`` term is skipped. The shift is a float32 subtraction: a codebook with
values of opposite sign whose difference exceeds the float32 range (about 3.4e38)
makes products overflow to inf.

Cost (``cost(batch, backend)``; numba and native kernels do the same work). ``G`` =
groups stored, ``G+`` = non-empty groups, ``s`` = 1 when ``omega[0]`` is non-zero
else 0. Batch 1 runs the branch-free matvec (``cer_matvec`` / ``grp_mv_*``): four
running sums over a row's entries, each stored to a scratch ``sums`` (``width + 4``
floats, cache-resident), a group's input sum ``P(e) - P(s)`` from four stored sums:

- adds: ``nnz`` (running sums) + ``5 G`` (3 to form ``P(e)``, the difference, the
  accumulate; empty CER groups too) + ``2 m`` (two chains combined, the base added) +
  ``s*n`` (``sum(x)``);
- mults: ``G`` + ``s`` (empty CER groups multiply an exact 0);
- reads: ``omega`` ``G + s``, ``col_idx`` ``nnz``, ``omega_ptr`` ``G + 2m``,
  ``row_ptr`` ``m + 1``, ``omega_idx`` (CSER) ``G``, ``sums`` ``4 G``, ``x``
  ``nnz + s*n``; writes: ``sums`` ``nnz``, ``y`` ``m``.

Batches (``W @ X`` with ``b`` columns) follow the paper's algorithm per column: add
each group's inputs, multiply once per non-empty group: adds ``(nnz + G+ + s*(n +
m)) * b``, mults ``(G+ + s) * b``, ``x`` ``(nnz + s*n) * b``, ``y`` ``m * b``; the
matrix's arrays are counted once (``omega`` ``G+ + s``, ``omega_ptr`` ``G + m``).

Kernels: the native ones (``kernels/csrc/sparse.c``, reading ``col_idx``,
``omega_ptr`` and ``omega_idx`` in place at their stored widths; ``row_ptr`` copied
to int64) when a native path is active, else the numba kernels of
``kernels/cer.py``. Both compute the algorithm above. Batch 1: per row, four
running sums of the inputs (column indices read eight per 64-bit load) stored to the
scratch, each group's sum the difference of two prefixes, one multiply per group
(SIMD gathers with an in-register prefix scan measured slower on AMD Zen 4).
Batched (``W @ X``; ``X @ Wᵀ`` transposes ``X`` and the result around it): per row,
block of up to 64 inputs and group, the group's rows of ``X`` are added in SIMD
registers and multiplied once by the group's value, so the indices are decoded once
per block of 64 inputs.

On AVX-512 CPUs, when the non-empty groups use at most 32 values, the kernel object
also builds at load (never stored) the sliced codebook layout for batch 1 and the
entries' codes for batches (docs/architecture/kernels.md, "The sliced codebook
layout"); at the AVX-512 level those run instead, and ``cost(batch, "avx512")``
counts them.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np

from compactnn.coding.codebook import distinct, frequency_codebook
from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import (
    FormatError,
    as_dense_input,
    require_below,
    require_dtype,
    require_finite,
    require_pointers,
)
from compactnn.formats.csr import sliced_cost
from compactnn.formats.dtypes import index_dtype
from compactnn.formats.registry import register
from compactnn.kernels import cer as k
from compactnn.kernels._jit import numba_threads
from compactnn.kernels.sliced import COLS, VALUES, sliced_steps

__all__ = ["CER", "grouped_arrays"]

_NO_IDX = np.empty(0, dtype=np.uint8)


def grouped_arrays(W: np.ndarray) -> dict[str, np.ndarray]:
    """Encode ``W`` (2-D float32, finite) into both layouts at once.

    Returns ``omega``, ``col_idx`` (identical for CER and CSER), the CSER
    ``omega_ptr``/``row_ptr``/``omega_idx`` and the CER ``cer_omega_ptr``/
    ``cer_row_ptr``, with the smallest index dtypes. The codebook is
    ``frequency_codebook``; the grouping is a per-row counting sort by code in two
    parallel kernel passes (``kernels/cer.py``: ``group_counts``, ``group_fill``),
    O(m*n + groups).

    >>> g = grouped_arrays(np.array([[0, 2, 1, 2], [0, 0, 0, 1]], np.float32))
    >>> g["omega"].tolist(), g["col_idx"].tolist(), g["omega_idx"].tolist()
    ([0.0, 1.0, 2.0], [2, 1, 3, 3], [1, 2, 1])
    >>> g["cer_omega_ptr"].tolist(), g["cer_row_ptr"].tolist()
    ([0, 1, 3, 4], [0, 2, 3])
    """
    m, n = W.shape
    omega, codes, _ = frequency_codebook(W)
    K = omega.size
    codes = codes.reshape(m, n)
    nnz_r, grp_r, top_r = (np.empty(m, np.int64) for _ in range(3))
    k.group_counts(codes, nnz_r, grp_r, top_r)
    col_off, grp_off, cer_off = _offsets(nnz_r), _offsets(grp_r), _offsets(top_r)
    nnz, groups, cer_groups = int(col_off[-1]), int(grp_off[-1]), int(cer_off[-1])
    col_idx = np.empty(nnz, index_dtype(max(n - 1, 0)))
    sizes = np.empty(groups, np.int64)
    omega_idx = np.empty(groups, index_dtype(max(K - 1, 0)))
    cer_sizes = np.empty(cer_groups, np.int64)
    k.group_fill(codes, col_off, grp_off, cer_off, col_idx, sizes, omega_idx, cer_sizes)
    return {
        "omega": omega,
        "col_idx": col_idx,
        "omega_ptr": _offsets(sizes).astype(index_dtype(nnz)),
        "row_ptr": grp_off.astype(index_dtype(groups)),
        "omega_idx": omega_idx,
        "cer_omega_ptr": _offsets(cer_sizes).astype(index_dtype(nnz)),
        "cer_row_ptr": cer_off.astype(index_dtype(cer_groups)),
    }


def _offsets(sizes: np.ndarray) -> np.ndarray:
    """Start of each part and the total (int64, ``len(sizes) + 1``)."""
    out = np.zeros(sizes.size + 1, np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


class GroupedRows(CompactMatrix):
    """Shared machinery of CER and CSER: validation, products, decoding, cost.

    Subclasses set ``arrays`` and implement ``from_dense``, ``_kernel_idx`` and
    ``_check_groups``.
    """

    omega: np.ndarray
    col_idx: np.ndarray
    omega_ptr: np.ndarray
    row_ptr: np.ndarray
    explicit: ClassVar[bool] = False

    @property
    def nnz(self) -> int:
        """Number of stored column indices (entries whose code is not 0)."""
        return int(self.col_idx.shape[0])

    @property
    def groups(self) -> int:
        """Number of stored groups (CER: padding groups included)."""
        return int(self.omega_ptr.shape[0]) - 1

    pointer_arrays = ("omega_ptr", "row_ptr")

    def _kernel_idx(self) -> np.ndarray:
        """The ``omega_idx`` array the kernels read (empty for CER)."""
        return _NO_IDX

    def _index_bounds(self) -> dict[str, int]:
        return {"col_idx": self.shape[1] - 1}

    def _prepare(self) -> None:
        K = self.omega.shape[0]
        self._shift = bool(K and self.omega[0] != 0)
        self._omega0 = self.omega[0] if self._shift else np.float32(0.0)
        self._shifted = self.omega - self._omega0 if self._shift else self.omega
        row_entries = np.diff(self.omega_ptr[self.row_ptr.astype(np.int64)].astype(np.int64))
        self._width = int(row_entries.max()) if row_entries.size else 0

    # ---- conversion -------------------------------------------------------------------
    def to_dense(self) -> np.ndarray:
        m, n = self.shape
        fill = self.omega[0] if self.omega.shape[0] else np.float32(0.0)
        out = np.full((m, n), fill, dtype=np.float32)
        if self.nnz:
            k.cer_to_dense(self.col_idx, self.omega_ptr, self.row_ptr, self._kernel_idx(),
                           self.explicit, self.omega, out)
        return out

    # ---- products ---------------------------------------------------------------------
    def _native(self):
        """The native kernel object (built on first use; it reads the stored arrays in
        place), or None on the numba path."""
        return self._cached_kernel(lambda nat: nat.GroupedMatrix(
            self.col_idx, self.omega_ptr, self.row_ptr,
            self._kernel_idx() if self.explicit else None, self._shifted,
            float(self._omega0), *self.shape))

    def fused_rows(self, batch: int):
        return self._native()

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(x, y, 1, None)
            return
        base = self._omega0 * x.sum(dtype=np.float32) if self._shift else np.float32(0.0)
        chunks = min(self.shape[0], 16 * numba_threads())
        k.cer_matvec(self.col_idx, self.omega_ptr, self.row_ptr, self._kernel_idx(),
                     self.explicit, self._shifted, np.float32(base), x, y, chunks, self._width)

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.matmul(X, Y, X.shape[1])
            return
        if self._shift:
            base = self._omega0 * X.sum(axis=0, dtype=np.float32)
        else:
            base = np.zeros(X.shape[1], dtype=np.float32)
        chunks = min(self.shape[0], 16 * numba_threads())
        k.cer_matmul(self.col_idx, self.omega_ptr, self.row_ptr, self._kernel_idx(),
                     self.explicit, self._shifted, base, X, Y, chunks)

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(X, Y, X.shape[0], None)
            return
        super()._rmatmul(X, Y)

    # ---- validation -------------------------------------------------------------------
    def _check(self) -> None:
        fmt = self.format_id
        m, n = self.shape
        require_finite(fmt, "omega", self.omega)
        K = self.omega.shape[0]
        if m * n and not K:
            raise FormatError(f"{fmt}: array 'omega' is empty for a non-empty {m}x{n} matrix")
        if np.unique(self.omega.view(np.uint32)).size != K:
            raise FormatError(f"{fmt}: array 'omega' repeats a value (by bit pattern)")
        require_dtype(fmt, "col_idx", self.col_idx, "u")
        require_dtype(fmt, "omega_ptr", self.omega_ptr, "u")
        if self.omega_ptr.shape[0] == 0:
            raise FormatError(f"{fmt}: array 'omega_ptr' is empty, expected groups + 1 entries")
        require_pointers(fmt, "row_ptr", self.row_ptr, m + 1, self.groups)
        require_pointers(fmt, "omega_ptr", self.omega_ptr, self.groups + 1, self.nnz)
        require_below(fmt, "col_idx", self.col_idx, n)
        self._check_groups(K)
        if self.nnz:
            chunks = max(1, min(m, 4 * numba_threads()))
            bad = np.zeros(m, dtype=np.bool_)
            k.cer_bad_rows(self.col_idx, self.omega_ptr, self.row_ptr, n, chunks, bad)
            if bad.any():
                raise FormatError(
                    f"{fmt}: array 'col_idx' has unsorted or repeated columns in row "
                    f"{int(np.argmax(bad))}"
                )

    @abstractmethod
    def _check_groups(self, K: int) -> None:
        """Format-specific checks of the group structure (``K`` = codebook size)."""

    # ---- cost model -------------------------------------------------------------------
    def _used_values(self) -> int:
        """Distinct values of the non-empty groups (at most 32: the AVX-512 kernel object
        also runs batched products as csr rows with codes)."""
        if "_used" not in self.__dict__:
            rp = self.row_ptr.astype(np.int64)
            sizes = np.diff(self.omega_ptr.astype(np.int64))
            if self.explicit:
                codes = self._kernel_idx().astype(np.int64)
            else:  # cer: group g of row r has code g - row_ptr[r] + 1
                codes = np.arange(self.groups, dtype=np.int64) - np.repeat(rp[:-1], np.diff(rp)) + 1
            self._used = distinct(codes[sizes > 0])
        return self._used

    def _sliced_steps(self) -> int:
        """Steps of the sliced layout the AVX-512 kernel object builds (0: none)."""
        if "_steps" not in self.__dict__:
            m, n = self.shape
            rp = self.row_ptr.astype(np.int64)
            self._steps = sliced_steps(np.diff(self.omega_ptr[rp].astype(np.int64)), self.col_idx,
                                       self._used_values(), m, n, "grouped")
        return self._steps

    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        nnz, G = self.nnz, self.groups
        steps = self._sliced_steps() if batch == 1 and backend == "avx512" else 0
        if steps:  # plus omega0 * sum(x) when shifted
            c = sliced_cost(steps, m, n)
            if self._shift:
                c.adds += n + m
                c.mults += 1
                c.read("x", COLS * steps + n, 32, 4 * n)
            return c
        s = int(self._shift)
        if batch > 1 and backend == "avx512" and nnz and self._used_values() <= VALUES:
            # csr rows with codes: an FMA per entry and input, the entries read once per
            # 64 inputs; then omega0 * (column sums of X) added to every row
            passes = -(-batch // 64)
            c = Cost(adds=(nnz + s * (n + m)) * batch, mults=(nnz + s * m) * batch)
            c.read("codes", nnz * passes, 8, nnz)
            c.read("col_idx", nnz * passes, self.col_idx)
            c.read("lut", nnz * passes, 32, 4 * VALUES)
            c.read("entry_ptr", m + 1, 64, 8 * (m + 1))
            c.read("x", (nnz + s * n) * batch, 32, 4 * n * batch)
            c.write("y", m * batch, 32, 4 * m * batch)
            return c
        nonempty = int(np.count_nonzero(np.diff(self.omega_ptr))) if G else 0
        c = Cost()
        if batch == 1:  # the branch-free matvec (numba and native alike)
            c.adds = nnz + 5 * G + 2 * m + s * n
            c.mults = G + s
            c.read("omega", G + s, self.omega)
            c.read("omega_ptr", G + 2 * m, self.omega_ptr)
            c.write("sums", nnz, 32, 4 * (int(self._width) + 4))
            c.read("sums", 4 * G, 32, 4 * (int(self._width) + 4))
        else:  # sum-then-multiply per non-empty group and column
            c.adds = (nnz + nonempty + s * (n + m)) * batch
            c.mults = (nonempty + s) * batch
            c.read("omega", nonempty + s, self.omega)
            c.read("omega_ptr", G + m, self.omega_ptr)
        c.read("col_idx", nnz, self.col_idx)
        c.read("row_ptr", m + 1, self.row_ptr)
        if self.explicit:
            c.read("omega_idx", G, self._kernel_idx())
        c.read("x", (nnz + s * n) * batch, 32, 4 * n * batch)
        c.write("y", m * batch, 32, 4 * m * batch)
        return c


@register
class CER(GroupedRows):
    """Compressed Entropy Row: codebook + column indices grouped by value per row, with
    implicit group values (empty padding groups where a row skips a value)."""

    format_id = "cer"
    arrays = ("omega", "col_idx", "omega_ptr", "row_ptr")

    @classmethod
    def from_dense(cls, W: np.ndarray) -> CER:
        W = as_dense_input(W)
        g = grouped_arrays(W)
        return cls(W.shape, omega=g["omega"], col_idx=g["col_idx"],
                   omega_ptr=g["cer_omega_ptr"], row_ptr=g["cer_row_ptr"])

    def _check_groups(self, K: int) -> None:
        if self.shape[0]:
            most = int(np.diff(self.row_ptr.astype(np.int64)).max())
            if most > max(K - 1, 0):
                raise FormatError(
                    f"cer: array 'row_ptr' gives a row {most} groups, more than K-1 = {K - 1}"
                )
