"""``compact_blocks``: a permuted block-diagonal matrix (the layout of ``blockdiag``)
whose blocks are each stored in another registered format (after pruning or weight
sharing inside the blocks), with direct products.

Byte layout. Attributes: ``inner`` (the blocks' format id, any registered format but
this one), ``seed`` and ``blocks`` (N) as in ``blockdiag``, ``inner_attrs`` (one JSON
object per block: the block's own attributes without ``format``/``version``/``shape``).
Arrays:

- ``rows``, ``cols``, ``row_ptr``, ``col_ptr``: the ``blockdiag`` layout (block ``b``
  covers rows ``rows[row_ptr[b]:row_ptr[b+1]]`` and columns
  ``cols[col_ptr[b]:col_ptr[b+1]]``; every entry outside the blocks is +0.0), each in
  the smallest unsigned dtype holding its range; empty uint8 when ``seed`` is set (the
  layout is then ``blockdiag.seeded_layout``);
- ``b<b>_<name>``: array ``name`` of block ``b`` (shape ``(r_b, c_b)`` from the layout)
  in the ``inner`` format, exactly as that format stores it.

``check()`` validates the layout without allocating anything of the matrix's size,
then every block through its own format's ``from_buffers`` (so its ``check()``).

Contract extensions (``CompactMatrix``): the stored arrays depend on ``inner`` and N, so
``arrays`` is set per instance (the class lists the layout arrays) and ``from_buffers``
is overridden to build the blocks first; ``from_dense(W, inner="csr")`` takes the
blocks' format (default CSR); ``automatic = False``: not a candidate of the conversion
policies (``formats.available()``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np

from compactnn._validate import is_int
from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.blockdiag import BlockDiag, even_split, layout_problem, seeded_layout
from compactnn.formats.checks import FormatError, require_dtype
from compactnn.formats.dtypes import index_dtype
from compactnn.formats.permseq import MAX_SEED
from compactnn.formats.registry import get, register

__all__ = ["CompactBlocks"]

_LAYOUT = ("rows", "cols", "row_ptr", "col_ptr")
_BLOCK = re.compile(r"^b(0|[1-9][0-9]*)_(.+)$")
_FID = "compact_blocks"


def _bad(msg: str) -> FormatError:
    return FormatError(f"{_FID}: {msg}")


@register
class CompactBlocks(CompactMatrix):
    """The blocks of a block-diagonal matrix, each in a registered compact format.

    >>> M = BlockDiag.from_dense(np.diag(np.arange(1, 4, dtype=np.float32)))
    >>> C = CompactBlocks(M, "csr")
    >>> C.matvec(np.ones(3, np.float32)).tolist(), C.num_blocks
    ([1.0, 2.0, 3.0], 3)
    """

    format_id = _FID
    version = 1
    arrays: tuple[str, ...] = _LAYOUT  # per instance: plus every block's arrays
    attrs = ("inner", "seed", "blocks", "inner_attrs")
    automatic: ClassVar[bool] = False

    def __init__(self, matrix: BlockDiag, format_id: str) -> None:
        if not isinstance(matrix, BlockDiag):
            raise TypeError(f"expected a BlockDiag matrix, got {type(matrix).__name__}")
        fmt = get(format_id)
        if fmt is CompactBlocks:
            raise ValueError("the blocks of compact_blocks cannot be compact_blocks")
        self.shape = matrix.shape
        self.inner, self.seed, self.blocks = format_id, matrix.seed, matrix.blocks
        self.parts: list[CompactMatrix] = [
            fmt.from_dense(np.ascontiguousarray(matrix.block(b))) for b in range(matrix.blocks)]
        m, n = self.shape
        if self.seed is None:
            rows, cols, rp, cp = matrix.layout()
            self.rows, self.cols = rows.astype(index_dtype(max(m - 1, 0))), cols.astype(
                index_dtype(max(n - 1, 0)))
            self.row_ptr, self.col_ptr = rp.astype(index_dtype(m)), cp.astype(index_dtype(n))
        else:
            self.rows = self.cols = self.row_ptr = self.col_ptr = np.zeros(0, np.uint8)
        self._finish()

    @classmethod
    def from_dense(cls, W: np.ndarray, inner: str = "csr") -> CompactBlocks:
        """Blocks = the connected components of W's entries (``BlockDiag.from_dense``),
        each stored in format ``inner``."""
        return cls(BlockDiag.from_dense(W), inner)

    @property
    def num_blocks(self) -> int:
        """N, the number of blocks."""
        return self.blocks

    # ---- layout and storage ----------------------------------------------------------
    def _finish(self) -> None:
        """Per-instance array names, ``inner_attrs`` and the int64 layout."""
        names, inner_attrs = list(_LAYOUT), []
        for b, P in enumerate(self.parts):
            bufs, at = P.to_buffers()
            names += [f"b{b}_{a}" for a in bufs]
            inner_attrs.append({k: v for k, v in at.items()
                                if k not in ("format", "version", "shape")})
        self.arrays = tuple(names)
        self.inner_attrs = inner_attrs
        self._layout = self._layout_arrays()

    def _layout_arrays(self) -> tuple[np.ndarray, ...]:
        if self.seed is None:
            return tuple(getattr(self, a).astype(np.int64) for a in _LAYOUT)
        return tuple(a.astype(np.int64) for a in seeded_layout(self.shape, self.blocks,
                                                               self.seed))

    def layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, row_ptr, col_ptr)`` as int64, stored or regenerated."""
        return self._layout  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        match = _BLOCK.match(name)
        parts = self.__dict__.get("parts")
        if match is None or parts is None or int(match.group(1)) >= len(parts):
            raise AttributeError(name)
        return parts[int(match.group(1))].to_buffers()[0][match.group(2)]

    def _stored(self, name: str) -> np.ndarray:
        return getattr(self, name)

    @property
    def nbytes(self) -> int:
        """Bytes of the layout arrays (none when seeded) and every block's arrays."""
        return int(sum(getattr(self, a).nbytes for a in _LAYOUT)
                   + sum(P.nbytes for P in self.parts))

    @classmethod
    def from_buffers(cls, bufs: dict[str, np.ndarray], attrs: dict[str, Any]) -> CompactBlocks:
        """Rebuild from ``to_buffers()`` output: the attributes, the layout (checked), then
        each block through its format's ``from_buffers``."""
        if attrs.get("format", _FID) != _FID:
            raise _bad(f"buffers are format {attrs.get('format')!r}")
        if attrs.get("version", cls.version) != cls.version:
            raise _bad(f"unsupported version {attrs.get('version')!r} (have {cls.version})")
        shape = attrs.get("shape")
        if (not isinstance(shape, (list, tuple)) or len(shape) != 2
                or not all(is_int(s, 0, numpy=False) for s in shape)):
            raise _bad(f"bad shape {shape!r}")
        missing = [a for a in _LAYOUT if a not in bufs]
        if missing:
            raise _bad(f"missing arrays {missing}")
        missing = [a for a in cls.attrs if a not in attrs]
        if missing:
            raise _bad(f"missing attributes {missing}")
        obj = cls.__new__(cls)
        obj.shape = (shape[0], shape[1])
        obj.inner, obj.seed, obj.blocks = attrs["inner"], attrs["seed"], attrs["blocks"]
        for a in _LAYOUT:
            if not isinstance(bufs[a], np.ndarray):
                raise _bad(f"array {a!r} is not an ndarray")
            setattr(obj, a, np.ascontiguousarray(bufs[a]))
        fmt, spans = obj._check_layout()
        inner_attrs = attrs["inner_attrs"]
        if not isinstance(inner_attrs, list) or len(inner_attrs) != obj.blocks or not all(
                isinstance(a, dict) for a in inner_attrs):
            raise _bad(f"inner_attrs must hold one object per block ({obj.blocks})")
        parts, used = [], set(_LAYOUT)
        for b, (r, c) in enumerate(spans):
            names = [a for a in fmt.arrays if f"b{b}_{a}" in bufs]
            used.update(f"b{b}_{a}" for a in names)
            try:
                parts.append(fmt.from_buffers(
                    {a: bufs[f"b{b}_{a}"] for a in names},
                    {**inner_attrs[b], "format": fmt.format_id, "version": fmt.version,
                     "shape": [r, c]}))
            except FormatError as exc:
                raise _bad(f"block {b}: {exc}") from None
        extra = sorted(set(bufs) - used)
        if extra:
            raise _bad(f"unexpected arrays {extra[:5]}")
        obj.parts = parts
        obj._finish()
        return obj

    # ---- validation ------------------------------------------------------------------
    def _check_layout(self) -> tuple[type[CompactMatrix], list[tuple[int, int]]]:
        """Validate ``inner``, ``seed``, ``blocks`` and the layout arrays; returns the
        inner format and each block's shape. Allocates O(m + n) at most."""
        m, n = self.shape
        try:
            fmt = get(self.inner) if isinstance(self.inner, str) else None
        except KeyError:
            fmt = None
        if fmt is None or fmt is CompactBlocks:
            raise _bad(f"inner format {self.inner!r} is not a registered format (or is "
                       f"{_FID})")
        N = self.blocks
        if not is_int(N, 0, max(m, n, 1), numpy=False):
            raise _bad(f"blocks must be an integer in 0..{max(m, n, 1)}, got {N!r}")
        for a in _LAYOUT:
            require_dtype(_FID, a, getattr(self, a), "u")
        if self.seed is not None:
            if not is_int(self.seed, 0, MAX_SEED, numpy=False) or N < 1:
                raise _bad(f"seed must be null or an integer in [0, 2**63) with blocks >= 1, "
                           f"got seed {self.seed!r}, blocks {N}")
            if any(getattr(self, a).size for a in _LAYOUT):
                raise _bad("a seeded matrix stores no layout arrays")
            rp, cp = even_split(m, N), even_split(n, N)
        else:
            if self.row_ptr.shape != (N + 1,):
                raise _bad(f"row_ptr has shape {self.row_ptr.shape}, expected ({N + 1},)")
            problem = layout_problem(self.rows, self.cols, self.row_ptr, self.col_ptr, m, n)
            if problem:
                raise _bad(problem)
            rp, cp = self.row_ptr.astype(np.int64), self.col_ptr.astype(np.int64)
        return fmt, [(int(r), int(c)) for r, c in zip(np.diff(rp), np.diff(cp), strict=True)]

    def check(self) -> None:
        """Validate the layout and every block (``FormatError`` naming the first problem)."""
        _, spans = self._check_layout()
        parts = self.__dict__.get("parts")
        if not isinstance(parts, list) or len(parts) != len(spans):
            raise _bad(f"{len(spans)} blocks in the layout, {len(parts or [])} stored")
        for b, (P, span) in enumerate(zip(parts, spans, strict=True)):
            if P.shape != span or P.format_id != self.inner:
                raise _bad(f"block {b} is {P.format_id} {P.shape}, the layout says "
                           f"{self.inner} {span}")
            try:
                P.check()
            except FormatError as exc:
                raise _bad(f"block {b}: {exc}") from None

    def _check(self) -> None:  # check() is overridden as a whole
        self.check()

    # ---- decoding and products ---------------------------------------------------------
    def _spans(self):
        rows, cols, rp, cp = self._layout
        for b, P in enumerate(self.parts):
            yield P, rows[rp[b]:rp[b + 1]], cols[cp[b]:cp[b + 1]]

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, np.float32)
        for P, r, c in self._spans():
            out[np.ix_(r, c)] = P.to_dense()
        return out

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        y[:] = 0
        for P, r, c in self._spans():
            if r.size:
                y[r] = P.matvec(x[c])

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        Y[:] = 0
        for P, r, c in self._spans():
            if r.size:
                Y[r] = P.matmul(X[c])

    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        c = Cost()
        for P in self.parts:
            pc = P.cost(batch, backend)
            c.adds += pc.adds
            c.mults += pc.mults
            for k, v in pc.reads.items():
                old = c.reads.get(k, (0, v[1], 0))
                c.reads[k] = (old[0] + v[0], v[1], old[2] + v[2])
        for name, count in (("cols", n), ("rows", m)):
            bits = index_dtype(max(count - 1, 0)).itemsize * 8  # stored or regenerated
            c.read(name, count, bits, count * bits // 8)
        c.write("y", m * batch, 32, 4 * m * batch)
        return c
