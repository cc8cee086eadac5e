"""``permseq``: every row is a permutation of one of ``G`` base sequences.

``W[i, perm[i, k]] = base[group[i], k]`` (the permuted-feature layers of
Nagaraju & Chandrachoodan 2023; see ``compactnn.nn.permuted``).

Byte layout (two modes, told apart by the attribute ``seed``):

- ``seed = null`` (indices stored): ``base`` float32 (G, n) row-major; ``group``
  (m,) the base sequence of each row, smallest unsigned type that holds G-1;
  ``perm`` (m, n) row ``i`` a permutation of ``0 .. n-1``, smallest unsigned type
  that holds n-1.
- ``seed = s`` (an integer in [0, 2**63)): only ``base`` is stored; ``group`` is
  an empty uint8 (0,) and ``perm`` an empty uint8 (0, 0). Row ``i`` uses base
  sequence ``i * G // m`` and permutation ``i`` of stream 0 of the seeded generator
  specified in ``compactnn.kernels.permute`` (regenerated on load, never stored).

``from_dense`` is lossless for any matrix **[choice]**: ``perm[i]`` is the stable
rank order of row ``i`` under the total order of float32 bit patterns (-0.0 before
+0.0), and rows whose sorted rows are bit-identical share one base sequence (groups
numbered by first occurrence). A matrix without shared structure gets ``G = m``
and is larger than dense; the format pays off for layers trained as permuted
sequences (``PermSeq.seeded`` / ``PermSeq.from_parts``).

Products: ``W @ x`` runs the native CSR kernel (``kernels/csrc/sparse.c``) on rows of
``n`` entries whose columns are ``perm[i]`` and whose values are the shared row
``base[group[i]]`` (read in place), else the numba kernel; batches ``X @ Wᵀ`` (what
``CompactLinear`` runs) run the same kernel's batched rows (and ``W @ X`` for up to
``NATIVE_MAX_BATCH`` columns: measured 1.2-1.35x the decoded-tile path at 8 columns,
slower at 64), else a tile of rows is decoded and multiplied with BLAS. Cost:
``m * n`` multiply-adds, ``base``, ``perm`` and ``x`` reads, ``m`` ``group`` reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compactnn._validate import is_int
from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import (
    FormatError,
    as_dense_input,
    require_below,
    require_dtype,
    require_finite,
    require_len,
)
from compactnn.formats.dtypes import index_dtype
from compactnn.formats.registry import register
from compactnn.kernels import permute as k

__all__ = ["PermSeq", "seeded_permutations", "seeded_groups", "sortable_keys", "MAX_SEED",
           "check_seed"]

MAX_SEED = 2**63 - 1
NATIVE_MAX_BATCH = 16
"""Most columns of ``W @ X`` the native CSR kernel multiplies; wider ``X`` decodes tiles."""

_TILE_ELEMS = 1 << 16  # rows decoded per BLAS call in matmul: about 256 KB of float32


def seeded_permutations(seed: int, count: int, n: int, stream: int = 0) -> np.ndarray:
    """``count`` seeded permutations of ``0 .. n-1`` as a (count, n) array of the
    smallest unsigned type that holds ``n - 1``.

    >>> p = seeded_permutations(7, 2, 5)
    >>> sorted(p[0].tolist()), p.dtype.name
    ([0, 1, 2, 3, 4], 'uint8')
    """
    seed, stream = check_seed(seed), int(stream)
    if not 0 <= stream < 2**32:
        raise ValueError(f"stream must be in [0, 2**32), got {stream}")
    if count < 0 or n < 0:
        raise ValueError(f"negative permutation shape ({count}, {n})")
    out = np.empty((count, n), dtype=index_dtype(max(n - 1, 0)))
    if out.size:
        k.fill_seeded_permutations(np.uint64(seed), np.uint64(stream), out)
    return out


def seeded_groups(m: int, groups: int) -> np.ndarray:
    """Base sequence of each of ``m`` rows in a seeded layer: row ``i`` uses
    ``i * groups // m`` (contiguous, balanced groups)."""
    return (np.arange(m, dtype=np.int64) * groups // max(m, 1)).astype(
        index_dtype(max(groups - 1, 0))
    )


def sortable_keys(W: np.ndarray) -> np.ndarray:
    """uint32 keys whose order is the total order of float32 values (-0.0 < +0.0)."""
    u = np.ascontiguousarray(W, dtype=np.float32).view(np.uint32)
    return np.where(u >> 31 == 1, ~u, u | np.uint32(0x80000000))


def check_seed(seed: Any) -> int:
    """``seed`` as an int after checking it is an integer (not a bool) in
    ``[0, MAX_SEED]``, the seeds ``seeded_permutations`` takes."""
    if not is_int(seed):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return int(seed)


@register
class PermSeq(CompactMatrix):
    """Rows as permutations of ``G`` shared base sequences (indices stored or seeded)."""

    format_id = "permseq"
    arrays = ("base", "group", "perm")
    attrs = ("seed",)

    def _index_bounds(self) -> dict[str, int]:
        if self.seed is not None:  # nothing stored: empty uint8 arrays
            return {"group": 0, "perm": 0}
        return {"group": self.base.shape[0] - 1, "perm": self.shape[1] - 1}

    # ---- constructors -----------------------------------------------------------------
    @classmethod
    def from_dense(cls, W: np.ndarray) -> PermSeq:
        W = as_dense_input(W)
        m, n = W.shape
        perm = np.argsort(sortable_keys(W), axis=1, kind="stable")
        sorted_bits = np.take_along_axis(W.view(np.uint32), perm, axis=1)
        if m == 0:
            group, base_bits = np.zeros(0, np.int64), np.zeros((0, n), np.uint32)
        elif n == 0:
            group, base_bits = np.zeros(m, np.int64), np.zeros((1, 0), np.uint32)
        else:
            uniq, first, inv = np.unique(
                sorted_bits, axis=0, return_index=True, return_inverse=True
            )
            order = np.argsort(first, kind="stable")  # groups by first occurrence
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            group, base_bits = rank[inv.reshape(-1)], uniq[order]
        G = base_bits.shape[0]
        return cls(
            (m, n),
            base=np.ascontiguousarray(base_bits).view(np.float32),
            group=group.astype(index_dtype(max(G - 1, 0))),
            perm=perm.astype(index_dtype(max(n - 1, 0))),
            seed=None,
        )

    @classmethod
    def from_parts(cls, base: np.ndarray, group: np.ndarray, perm: np.ndarray) -> PermSeq:
        """Indices-stored matrix from ``base`` (G, n), ``group`` (m,) and ``perm``
        (m, n) with ``W[i, perm[i, k]] = base[group[i], k]``; validated."""
        base = np.ascontiguousarray(base, dtype=np.float32)
        group, perm = np.asarray(group), np.asarray(perm)
        if perm.ndim != 2 or base.ndim != 2:
            raise ValueError(f"base and perm must be 2-D, got {base.shape} and {perm.shape}")
        for name, a in (("group", group), ("perm", perm)):
            if a.size and a.dtype.kind not in "ui":
                raise TypeError(f"{name} must hold integers, got {a.dtype}")
            if a.size and a.min() < 0:
                raise ValueError(f"{name} has a negative entry")
        m, n = perm.shape
        G = base.shape[0]
        obj = cls(
            (m, n),
            base=base,
            group=group.astype(index_dtype(max(G - 1, 0))),
            perm=perm.astype(index_dtype(max(n - 1, 0))),
            seed=None,
        )
        obj.check()
        return obj

    @classmethod
    def seeded(cls, base: np.ndarray, m: int, seed: int) -> PermSeq:
        """Seeded matrix of ``m`` rows: only ``base`` (G, n) and the seed are stored."""
        base = np.ascontiguousarray(base, dtype=np.float32)
        if base.ndim != 2:
            raise ValueError(f"base must be 2-D (G, n), got shape {base.shape}")
        obj = cls(
            (int(m), base.shape[1]),
            base=base,
            group=np.zeros(0, np.uint8),
            perm=np.zeros((0, 0), np.uint8),
            seed=check_seed(seed),
        )
        obj.check()
        return obj

    # ---- properties -------------------------------------------------------------------
    @property
    def groups(self) -> int:
        """Number of base sequences ``G``."""
        return int(self.base.shape[0])

    @property
    def row_groups(self) -> np.ndarray:
        """Base sequence of each row (m,), stored or derived."""
        return self._group

    @property
    def permutations(self) -> np.ndarray:
        """``perm`` (m, n), stored or regenerated from the seed."""
        return self._perm

    # ---- decoding and products -----------------------------------------------------
    def _prepare(self) -> None:
        m, n = self.shape
        if self.seed is None:
            self._group, self._perm = self.group, self.perm
        else:
            self._group = seeded_groups(m, self.groups)
            self._perm = seeded_permutations(self.seed, m, n, stream=0)

    def to_dense(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        if out.size:
            k.permseq_decode(self.base, self._group, self._perm, 0, out)
        return out

    def _native(self):
        """The native kernel object for ``W @ x`` (built on first use): the rows as CSR
        rows of ``n`` entries with columns ``perm[i]`` and values ``base[group[i]]``
        read in place, or None on the numba path."""
        m, n = self.shape
        return self._cached_kernel(lambda nat: nat.CsrMatrix(
            self.base.reshape(-1), np.ascontiguousarray(self._perm).reshape(-1),
            np.arange(m + 1, dtype=np.uint64) * np.uint64(n), m, n,
            dataoff=self._group.astype(np.uint64) * np.uint64(n)))

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(x, y, 1, None)
            return
        k.permseq_matvec(self.base, self._group, self._perm, x, y)

    def fused_rows(self, batch: int):
        return self._native()

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(X, Y, X.shape[0], None)
        else:
            super()._rmatmul(X, Y)

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None and X.shape[1] <= NATIVE_MAX_BATCH:
            kern.matmul(X, Y, X.shape[1])
            return
        # Decode a few rows at a time into a small buffer and multiply with BLAS: the
        # decode costs O(rows * n) once per tile, the product O(rows * n * b).
        m, n = self.shape
        if n == 0:
            Y.fill(0)
            return
        step = max(1, _TILE_ELEMS // n)
        tile = np.empty((min(step, m), n), dtype=np.float32)
        for r0 in range(0, m, step):
            t = tile[: min(step, m - r0)]
            k.permseq_decode(self.base, self._group, self._perm, r0, t)
            np.matmul(t, X, out=Y[r0 : r0 + t.shape[0]])

    # ---- validation -------------------------------------------------------------------
    def _multi_dim_arrays(self) -> tuple[str, ...]:
        return ("base", "perm")

    def _check(self) -> None:
        m, n = self.shape
        base, group, perm = self.base, self.group, self.perm
        if base.ndim != 2 or base.shape[1] != n:
            raise FormatError(f"permseq: base has shape {base.shape}, expected (G, {n})")
        require_finite("permseq", "base", base.reshape(-1))
        G = base.shape[0]
        require_dtype("permseq", "group", group, "u")
        require_dtype("permseq", "perm", perm, "u")
        if self.seed is not None:
            if not is_int(self.seed, numpy=False):
                raise FormatError(f"permseq: seed must be an integer or null, got {self.seed!r}")
            if not 0 <= self.seed <= MAX_SEED:
                raise FormatError(f"permseq: seed {self.seed} out of range [0, 2**63)")
            if group.size or perm.size:
                raise FormatError("permseq: a seeded matrix stores no group or perm entries")
            if m and not G:
                raise FormatError("permseq: a seeded matrix with rows needs a base sequence")
            return
        if group.ndim != 1:
            raise FormatError(f"permseq: group must be 1-D, got {group.shape}")
        require_len("permseq", "group", group, m)
        require_below("permseq", "group", group, G)
        if perm.ndim != 2 or perm.shape != (m, n):
            raise FormatError(f"permseq: perm has shape {perm.shape}, expected {(m, n)}")
        require_below("permseq", "perm", perm.reshape(-1), n)
        seen = np.zeros((m, n), dtype=bool)
        seen[np.arange(m)[:, None], perm] = True
        if not seen.all():
            bad = int(np.flatnonzero(~seen.all(axis=1))[0])
            raise FormatError(f"permseq: row {bad} of perm is not a permutation of 0..{n - 1}")

    # ---- cost model -------------------------------------------------------------------
    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        c = Cost(adds=m * n, mults=m * n)
        c.read("base", m * n, self.base)
        c.read("perm", m * n, self._perm)
        c.read("group", m, self._group)
        c.read("x", m * n, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)
