"""``blockdiag``: a block-diagonal matrix under row and column permutations.

``W = P · blockdiag(W_1 .. W_N) · Q`` (MPDCompress, Supic et al. 2018; see
``compactnn.nn.blockdiag``). Block ``b`` covers the original rows
``rows[row_ptr[b]:row_ptr[b+1]]`` and columns ``cols[col_ptr[b]:col_ptr[b+1]]``;
every entry outside the blocks is +0.0. Products gather the input by ``cols``, run
one batched dense product per run of consecutive equal-shape blocks (numpy/BLAS),
and scatter the outputs by ``rows``.

Byte layout (two modes, told apart by the attribute ``seed``; attribute ``blocks``
is N):

- ``seed = null`` (layout stored): ``data`` float32, the blocks one after another,
  each row-major (length ``sum(r_b * c_b)``); ``rows`` (m,) a permutation of the
  rows in block order, the rows of no block (all +0.0) last; ``cols`` (n,) the same
  for columns; ``row_ptr``/``col_ptr`` (N+1,) start of each block in ``rows`` /
  ``cols``, from 0, non-decreasing, ending at most at m / n. Index arrays use the
  smallest unsigned type that holds their range.
- ``seed = s`` (an integer in [0, 2**63)): only ``data`` is stored, the four index
  arrays are empty uint8. The layout is ``seeded_layout((m, n), N, s)``: rows and
  columns split as evenly as ``numpy.array_split`` does (the first ``m % N`` blocks
  get one more row), ``rows`` = seeded permutation 0 of stream 0, ``cols`` = seeded
  permutation 0 of stream 1 (generator in ``compactnn.kernels.permute``).

``from_dense`` is lossless for any matrix **[choice]**: the blocks are the connected
components of the bipartite graph of entries whose bit pattern is not +0.0 (so
-0.0 counts as an entry), ordered by their smallest row, rows and columns ascending
inside a block, each block stored dense over its rows x columns. A matrix without
+0.0 entries becomes one block (dense storage plus two permutations); a block-masked
layer is stored with ``BlockDiag.from_masked`` and only its seed.
"""

from __future__ import annotations

import numpy as np

from compactnn._validate import integer, is_int
from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import (
    FormatError,
    as_dense_input,
    require_dtype,
    require_finite,
    require_len,
)
from compactnn.formats.dtypes import index_dtype
from compactnn.formats.permseq import MAX_SEED, check_seed, seeded_permutations
from compactnn.formats.registry import register

__all__ = ["BlockDiag", "even_split", "seeded_layout", "layout_problem"]

NATIVE_MAX_BATCH = 4
"""Largest batch the native kernel multiplies (4096x4096 in 4 or 16 blocks, 1 thread:
as fast as numpy's batched products at 1-4 inputs, slower from 8); larger batches run
numpy's batched products."""


def even_split(total: int, blocks: int) -> np.ndarray:
    """Pointer array (blocks+1,) splitting ``total`` items into ``blocks`` parts like
    ``numpy.array_split``: the first ``total % blocks`` parts get one more item."""
    sizes = total // blocks + (np.arange(blocks) < total % blocks)
    ptr = np.zeros(blocks + 1, dtype=np.int64)
    np.cumsum(sizes, out=ptr[1:])
    return ptr


def seeded_layout(
    shape: tuple[int, int], blocks: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, row_ptr, col_ptr)`` of the seeded N-block layout of an (m, n)
    matrix: seeded row and column permutations, even split into ``blocks`` parts."""
    m, n = (int(s) for s in shape)
    blocks, seed = _check_blocks(blocks), check_seed(seed)
    rows = seeded_permutations(seed, 1, m, stream=0)[0]
    cols = seeded_permutations(seed, 1, n, stream=1)[0]
    return rows, cols, even_split(m, blocks), even_split(n, blocks)


def _check_blocks(blocks: object) -> int:
    return integer("blocks", blocks, 1)


def layout_problem(rows, cols, row_ptr, col_ptr, m: int, n: int) -> str | None:
    """What is wrong with a stored layout (None if nothing): ``rows``/``cols``
    permutations of range(m)/range(n), pointers from 0, non-decreasing, at most m/n."""
    for name, idx, size in (("rows", rows, m), ("cols", cols, n)):
        if idx.shape != (size,):
            return f"{name} has shape {idx.shape}, expected ({size},)"
        if size and (int(idx.min()) < 0 or int(idx.max()) >= size):
            return f"{name} has an entry out of range [0, {size})"
        seen = np.zeros(size, dtype=bool)
        seen[idx] = True
        if not seen.all():
            return f"{name} is not a permutation"
    if row_ptr.ndim != 1 or row_ptr.shape != col_ptr.shape or row_ptr.size < 1:
        return f"row_ptr {row_ptr.shape} and col_ptr {col_ptr.shape} must have one length >= 1"
    for name, ptr, end in (("row_ptr", row_ptr, m), ("col_ptr", col_ptr, n)):
        if ptr[0] != 0:
            return f"pointer array {name!r} must start at 0"
        if np.any(ptr[1:] < ptr[:-1]):
            return f"pointer array {name!r} is not non-decreasing"
        if int(ptr[-1]) > end:
            return f"pointer array {name!r} ends at {int(ptr[-1])} > {end}"
    return None


@register
class BlockDiag(CompactMatrix):
    """Permuted block-diagonal matrix: dense blocks + row/column permutations (or a seed)."""

    format_id = "blockdiag"
    arrays = ("data", "rows", "cols", "row_ptr", "col_ptr")
    attrs = ("seed", "blocks")

    def _index_bounds(self) -> dict[str, int]:
        m, n = self.shape
        if self.seed is not None:  # nothing stored: empty uint8 arrays
            return dict.fromkeys(("rows", "cols", "row_ptr", "col_ptr"), 0)
        return {"rows": m - 1, "cols": n - 1, "row_ptr": m, "col_ptr": n}

    # ---- constructors -----------------------------------------------------------------
    @classmethod
    def from_dense(cls, W: np.ndarray) -> BlockDiag:
        W = as_dense_input(W)
        m, n = W.shape
        nz = W.view(np.uint32) != 0
        r, c = np.nonzero(nz)
        if nz.all():  # no +0.0 at all: one block, no graph needed
            rank_r, rank_c, N = np.zeros(m, np.int64), np.zeros(n, np.int64), int(W.size > 0)
        elif r.size == 0:
            rank_r, rank_c, N = np.zeros(m, np.int64), np.zeros(n, np.int64), 0
        else:
            from scipy.sparse import coo_array  # imported here: scipy takes 0.1 s to load
            from scipy.sparse.csgraph import connected_components

            graph = coo_array((np.ones(r.size, np.int8), (r, m + c)), shape=(m + n, m + n))
            ncomp, label = connected_components(graph, directed=False)
            active = np.zeros(ncomp, dtype=bool)
            active[label[r]] = True
            comps, first_row = np.unique(label[:m], return_index=True)
            keep = active[comps]
            ordered = comps[keep][np.argsort(first_row[keep], kind="stable")]
            N = ordered.size
            rank = np.full(ncomp, N, dtype=np.int64)
            rank[ordered] = np.arange(N)
            rank_r, rank_c = rank[label[:m]], rank[label[m:]]
        rows = np.argsort(rank_r, kind="stable")
        cols = np.argsort(rank_c, kind="stable")
        row_ptr = np.zeros(N + 1, np.int64)
        col_ptr = np.zeros(N + 1, np.int64)
        np.cumsum(np.bincount(rank_r, minlength=N + 1)[:N], out=row_ptr[1:])
        np.cumsum(np.bincount(rank_c, minlength=N + 1)[:N], out=col_ptr[1:])
        data = _gather_blocks(W, rows, cols, row_ptr, col_ptr)
        return cls(
            (m, n),
            data=data,
            rows=rows.astype(index_dtype(max(m - 1, 0))),
            cols=cols.astype(index_dtype(max(n - 1, 0))),
            row_ptr=row_ptr.astype(index_dtype(m)),
            col_ptr=col_ptr.astype(index_dtype(n)),
            seed=None,
            blocks=int(N),
        )

    @classmethod
    def seeded(cls, data: np.ndarray, shape: tuple[int, int], blocks: int, seed: int) -> BlockDiag:
        """Seeded matrix: ``data`` holds the blocks of ``seeded_layout(shape, blocks,
        seed)`` one after another, row-major; only ``data`` and the seed are stored."""
        blocks, seed = _check_blocks(blocks), check_seed(seed)
        empty = np.zeros(0, np.uint8)
        obj = cls(
            shape,
            data=np.ascontiguousarray(data, dtype=np.float32).reshape(-1),
            rows=empty,
            cols=empty,
            row_ptr=empty,
            col_ptr=empty,
            seed=seed,
            blocks=blocks,
        )
        obj.check()
        return obj

    @classmethod
    def from_masked(cls, W: np.ndarray, blocks: int, seed: int) -> BlockDiag:
        """Seeded matrix from a dense ``W`` that is +0.0 (bit pattern) outside the
        blocks of ``seeded_layout(W.shape, blocks, seed)``; raises ``ValueError``
        otherwise."""
        W = as_dense_input(W)
        layout = seeded_layout(W.shape, blocks, seed)
        return cls.seeded(_gather_blocks(W, *layout), W.shape, blocks, seed)

    @classmethod
    def from_layout(
        cls, W: np.ndarray, rows: np.ndarray, cols: np.ndarray, row_ptr: np.ndarray,
        col_ptr: np.ndarray,
    ) -> BlockDiag:
        """Matrix with an explicit (stored) layout from a dense ``W`` that is +0.0
        outside its blocks; raises ``ValueError`` otherwise."""
        W = as_dense_input(W)
        m, n = W.shape
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        row_ptr, col_ptr = np.asarray(row_ptr, np.int64), np.asarray(col_ptr, np.int64)
        problem = layout_problem(rows, cols, row_ptr, col_ptr, m, n)
        if problem:
            raise ValueError(f"bad block layout: {problem}")
        obj = cls(
            (m, n),
            data=_gather_blocks(W, rows, cols, row_ptr, col_ptr),
            rows=rows.astype(index_dtype(max(m - 1, 0))),
            cols=cols.astype(index_dtype(max(n - 1, 0))),
            row_ptr=row_ptr.astype(index_dtype(m)),
            col_ptr=col_ptr.astype(index_dtype(n)),
            seed=None,
            blocks=int(row_ptr.size - 1),
        )
        obj.check()
        return obj

    # ---- layout -----------------------------------------------------------------------
    def layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, row_ptr, col_ptr)`` as int64, stored or regenerated."""
        return self._rows, self._cols, self._row_ptr, self._col_ptr

    def block(self, b: int) -> np.ndarray:
        """Dense block ``b`` (r_b, c_b), a view into ``data``."""
        r = int(self._row_ptr[b + 1] - self._row_ptr[b])
        c = int(self._col_ptr[b + 1] - self._col_ptr[b])
        return self.data[self._data_ptr[b] : self._data_ptr[b + 1]].reshape(r, c)

    def _prepare(self) -> None:
        if self.seed is None:
            lay = (self.rows, self.cols, self.row_ptr, self.col_ptr)
        else:
            lay = seeded_layout(self.shape, self.blocks, self.seed)
        self._rows, self._cols, self._row_ptr, self._col_ptr = (a.astype(np.int64) for a in lay)
        rs, cs = np.diff(self._row_ptr), np.diff(self._col_ptr)
        self._data_ptr = np.zeros(rs.size + 1, np.int64)
        np.cumsum(rs * cs, out=self._data_ptr[1:])
        # Runs of consecutive blocks with one shape: one batched product each.
        self._runs = []
        b0 = 0
        for b in range(1, rs.size + 1):
            if b < rs.size and rs[b] == rs[b0] and cs[b] == cs[b0]:
                continue
            r, c, kk = int(rs[b0]), int(cs[b0]), b - b0
            if r:
                D = self.data[self._data_ptr[b0] : self._data_ptr[b]].reshape(kk, r, c)
                out_idx = self._rows[self._row_ptr[b0] : self._row_ptr[b]].reshape(kk, r)
                in_idx = self._cols[self._col_ptr[b0] : self._col_ptr[b]].reshape(kk, c)
                self._runs.append((D, out_idx, in_idx))
            b0 = b
        self._zero_rows = self._rows[self._row_ptr[-1] :]

    # ---- decoding and products -----------------------------------------------------
    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        for D, out_idx, in_idx in self._runs:
            out[out_idx[:, :, None], in_idx[:, None, :]] = D
        return out

    def _native(self):
        """The native kernel object (``kernels/csrc/blockdiag.c``, built on first use), or
        None on the numba path."""
        return self._cached_kernel(lambda nat: nat.BlockDiagMatrix(
            np.ascontiguousarray(self.data), self._rows, self._cols, self._row_ptr,
            self._col_ptr, *self.shape))

    def fused_rows(self, batch: int):
        return self._native() if batch <= NATIVE_MAX_BATCH else None

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None and X.shape[0] <= NATIVE_MAX_BATCH:
            kern.rows(X, Y, X.shape[0], None)
        else:
            super()._rmatmul(X, Y)

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(x, y, 1, None)
            return
        for D, out_idx, in_idx in self._runs:
            y[out_idx] = np.matmul(D, x[in_idx][:, :, None])[:, :, 0]
        y[self._zero_rows] = 0

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None and X.shape[1] <= NATIVE_MAX_BATCH:
            Yt = np.empty((Y.shape[1], Y.shape[0]), np.float32)
            kern.rows(np.ascontiguousarray(X.T), Yt, X.shape[1], None)
            Y[...] = Yt.T
            return
        for D, out_idx, in_idx in self._runs:
            Y[out_idx] = np.matmul(D, X[in_idx])
        Y[self._zero_rows] = 0

    # ---- validation -------------------------------------------------------------------
    def _check(self) -> None:
        m, n = self.shape
        for name in ("rows", "cols", "row_ptr", "col_ptr"):
            require_dtype("blockdiag", name, getattr(self, name), "u")
        require_finite("blockdiag", "data", self.data)
        N = self.blocks
        integer("blockdiag: blocks", N, 0, error=FormatError, numpy=False)
        if self.seed is not None:
            if not is_int(self.seed, numpy=False):
                raise FormatError(f"blockdiag: seed must be an integer or null, got {self.seed!r}")
            if not 0 <= self.seed <= MAX_SEED:
                raise FormatError(f"blockdiag: seed {self.seed} out of range [0, 2**63)")
            if not 1 <= N <= max(m, n, 1):
                raise FormatError(f"blockdiag: {N} blocks for a {m}x{n} seeded matrix")
            for name in ("rows", "cols", "row_ptr", "col_ptr"):
                if getattr(self, name).size:
                    raise FormatError(f"blockdiag: a seeded matrix stores no {name!r}")
            row_ptr, col_ptr = even_split(m, N), even_split(n, N)
        else:
            require_len("blockdiag", "rows", self.rows, m)
            require_len("blockdiag", "cols", self.cols, n)
            require_len("blockdiag", "row_ptr", self.row_ptr, N + 1)
            problem = layout_problem(self.rows, self.cols, self.row_ptr, self.col_ptr, m, n)
            if problem:
                raise FormatError(f"blockdiag: {problem}")
            row_ptr, col_ptr = self.row_ptr.astype(np.int64), self.col_ptr.astype(np.int64)
        size = int(np.dot(np.diff(row_ptr), np.diff(col_ptr)))
        require_len("blockdiag", "data", self.data, size)

    # ---- cost model -------------------------------------------------------------------
    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        nnz = int(self.data.shape[0])
        c = Cost(adds=nnz, mults=nnz)
        c.read("data", nnz, self.data)
        for name, count in (("cols", n), ("rows", m)):
            bits = index_dtype(max(count - 1, 0)).itemsize * 8  # stored or regenerated
            c.read(name, count, bits, count * bits // 8)
        c.read("x", nnz, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)


def _block_ids(perm: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Block of each original row (or column); -1 for those in no block."""
    ids = np.full(perm.size, -1, dtype=np.int64)
    ids[perm[: ptr[-1]]] = np.repeat(np.arange(ptr.size - 1), np.diff(ptr))
    return ids


def _gather_blocks(
    W: np.ndarray, rows: np.ndarray, cols: np.ndarray, row_ptr: np.ndarray, col_ptr: np.ndarray
) -> np.ndarray:
    """The blocks of ``W`` under a layout, concatenated row-major (float32); raises
    ``ValueError`` if an entry outside the blocks is not +0.0."""
    inside = _block_ids(rows, row_ptr)[:, None] == _block_ids(cols, col_ptr)[None, :]
    inside &= _block_ids(rows, row_ptr)[:, None] >= 0
    outside = W.view(np.uint32)[~inside]
    if np.any(outside != 0):
        raise ValueError(
            f"{int(np.count_nonzero(outside))} entries outside the {row_ptr.size - 1} blocks "
            "are not +0.0; apply the block mask (and bake it) first"
        )
    parts = [
        W[np.ix_(rows[row_ptr[b] : row_ptr[b + 1]], cols[col_ptr[b] : col_ptr[b + 1]])].reshape(-1)
        for b in range(row_ptr.size - 1)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
