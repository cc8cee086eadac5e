"""The ``CompactMatrix`` contract shared by every lossless format, and ``Cost``.

A format declares the names of its stored arrays once (``arrays``) and the names of
its scalar attributes (``attrs``, JSON-serialisable). Size (``nbytes``), serialisation
(``to_buffers``/``from_buffers``) and equality derive from that declaration, so the
reported bytes are exactly the bytes stored. Dense float32 is the hub: every format
converts from and to a dense ``(m, n)`` float32 matrix bit-identically.

Products go through checked entry points (``matvec``/``matmul``/``rmatmul``) that
validate the operand and allocate the output, then call the per-format
``_matvec``/``_matmul``/``_rmatmul`` hooks, which call the kernels on raw arrays.
``rmatmul`` (``X @ Wᵀ``, inputs as rows, what ``CompactLinear`` runs) defaults to
``_matmul`` on transposed copies; ``dense`` and ``index_map`` write it directly.
Callers that have validated their operands already (the compact layers) use the
unchecked public fast path instead: ``matvec_into``/``matmul_into``/``rmatmul_into``
(fill an output the caller allocated) and ``fused_rows`` (a native kernel that adds
the bias too). The underscore hooks are for formats to implement, not to call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from compactnn._validate import is_int
from compactnn.formats.checks import FormatError
from compactnn.formats.dtypes import canonical_index, canonical_pointer, index_dtype
from compactnn.kernels import backend as kernel_backend

__all__ = ["CompactMatrix", "Cost"]


@dataclass
class Cost:
    """Operation and memory-access counts of one matrix-vector product ``W @ x``.

    ``reads``/``writes`` map an array name to ``(element_count, element_bits,
    array_bytes)``; ``array_bytes`` picks the memory level in the energy model.
    ``flop_bits`` is the width of the arithmetic (32 for float32).
    """

    adds: int = 0
    mults: int = 0
    reads: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    writes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    flop_bits: int = 32

    def read(self, name: str, count: int, arr_or_bits: Any, nbytes: int | None = None) -> None:
        """Record ``count`` reads of array ``name`` (an ndarray, or its element bits)."""
        self.reads[name] = _access(count, arr_or_bits, nbytes)

    def write(self, name: str, count: int, arr_or_bits: Any, nbytes: int | None = None) -> None:
        """Record ``count`` writes of array ``name``."""
        self.writes[name] = _access(count, arr_or_bits, nbytes)

    def per_column(self, batch: int) -> Cost:
        """These counts (one ``W @ x``) for ``W @ X`` with ``batch`` columns when the
        kernel reads the matrix once: arithmetic, ``x`` reads and ``y`` writes grow
        with the batch, the matrix's own arrays do not."""
        if batch == 1:
            return self
        c = Cost(self.adds * batch, self.mults * batch, dict(self.reads), dict(self.writes),
                 self.flop_bits)
        for kind, name in ((c.reads, "x"), (c.writes, "y")):
            if name in kind:
                count, bits, nbytes = kind[name]
                kind[name] = (count * batch, bits, nbytes * batch)
        return c

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "adds": self.adds,
            "mults": self.mults,
            "reads": {k: list(v) for k, v in self.reads.items()},
            "writes": {k: list(v) for k, v in self.writes.items()},
            "flop_bits": self.flop_bits,
        }


def _access(count: int, arr_or_bits: Any, nbytes: int | None) -> tuple[int, int, int]:
    if isinstance(arr_or_bits, np.ndarray):
        return int(count), arr_or_bits.dtype.itemsize * 8, int(arr_or_bits.nbytes)
    if nbytes is None:
        raise ValueError("nbytes is required when element bits are given")
    return int(count), int(arr_or_bits), int(nbytes)


class CompactMatrix(ABC):
    """A lossless representation of a 2-D float32 matrix with direct products.

    Subclasses set ``format_id``, ``version``, ``arrays`` (names of stored ndarray
    attributes) and ``attrs`` (names of JSON scalar attributes besides ``shape``), and
    implement ``from_dense``, ``to_dense``, ``_matvec``, ``_matmul``, ``_check`` and
    ``_cost(batch, backend)`` (the counts of that kernel path, behind ``cost()``).
    """

    format_id: ClassVar[str]
    version: ClassVar[int] = 1
    arrays: ClassVar[tuple[str, ...]] = ()
    attrs: ClassVar[tuple[str, ...]] = ()
    pointer_arrays: ClassVar[tuple[str, ...]] = ()
    """Arrays of non-decreasing offsets: uint32/uint64 at run time, stored in the
    smallest dtype that holds their largest entry."""
    automatic: ClassVar[bool] = True
    """Whether conversion policies try this format (``available()``); False for formats
    of one purpose (e.g. ``packed_codes``, the packed embedding table)."""
    max_values: ClassVar[int | None] = None
    """Most distinct values (by bit pattern) a matrix of this format may hold; None: any.
    ``from_dense`` raises ``FormatError`` beyond it (e.g. ``packed_codes``: 256)."""

    def __init__(self, shape: tuple[int, int], **fields: Any) -> None:
        m, n = (int(s) for s in shape)
        if m < 0 or n < 0:
            raise FormatError(f"{self.format_id}: negative shape {shape}")
        self.shape: tuple[int, int] = (m, n)
        missing = set(self.arrays) | set(self.attrs)
        for name, value in fields.items():
            if name not in missing:
                raise TypeError(f"{self.format_id}: unexpected field {name!r}")
            if name in self.arrays and not isinstance(value, np.ndarray):
                raise FormatError(f"{self.format_id}: array {name!r} is not an ndarray")
            setattr(self, name, value)
            missing.discard(name)
        if missing:
            raise TypeError(f"{self.format_id}: missing fields {sorted(missing)}")
        self._canonicalise()
        self._prepare()

    # ---- conversion -----------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_dense(cls, W: np.ndarray) -> CompactMatrix:
        """Encode a 2-D float32 matrix losslessly."""

    @abstractmethod
    def to_dense(self) -> np.ndarray:
        """Decode to a dense float32 matrix, bit-identical to the encoded one."""

    # ---- products -------------------------------------------------------------------
    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``W @ x`` for ``x`` of shape ``(n,)``; returns float32 ``(m,)``."""
        x = np.asarray(x)
        if x.ndim != 1 or x.shape[0] != self.shape[1]:
            raise ValueError(f"matvec expects x of shape ({self.shape[1]},), got {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty(self.shape[0], dtype=np.float32)
        self.matvec_into(x, y)
        return y

    def matmul(self, X: np.ndarray) -> np.ndarray:
        """``W @ X`` for ``X`` of shape ``(n, b)``; returns float32 ``(m, b)``."""
        X = self._operand(X, "matmul", 0)
        Y = np.empty((self.shape[0], X.shape[1]), dtype=np.float32)
        self.matmul_into(X, Y)
        return Y

    def rmatmul(self, X: np.ndarray) -> np.ndarray:
        """``X @ Wᵀ`` for ``X`` of shape ``(b, n)`` (one input per row, as
        ``nn.Linear`` takes it); returns float32 ``(b, m)``."""
        X = self._operand(X, "rmatmul", 1)
        Y = np.empty((X.shape[0], self.shape[0]), dtype=np.float32)
        self.rmatmul_into(X, Y)
        return Y

    # Unchecked fast path: nothing below validates shapes, dtypes or contiguity; a
    # wrong operand reads or writes out of bounds. For callers that checked already.
    def matvec_into(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fill ``y`` with ``W @ x``, unchecked: ``x`` C-contiguous float32 ``(n,)``,
        ``y`` C-contiguous float32 ``(m,)``."""
        if y.shape[0]:
            self._matvec(x, y)

    def matmul_into(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Fill ``Y`` with ``W @ X``, unchecked: ``X`` C-contiguous float32 ``(n, b)``,
        ``Y`` C-contiguous float32 ``(m, b)``."""
        if Y.size:
            self._matmul(X, Y)

    def rmatmul_into(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Fill ``Y`` with ``X @ Wᵀ``, unchecked: ``X`` C-contiguous float32 ``(b, n)``,
        ``Y`` C-contiguous float32 ``(b, m)``."""
        if Y.size:
            self._rmatmul(X, Y)

    def fused_rows(self, batch: int) -> Any:
        """A native kernel whose ``rows(X, Y, batch, bias)`` computes ``Y = X @ Wᵀ + bias``
        in one call for this batch size, or ``None`` (no such kernel: use
        ``rmatmul_into``). Unchecked: ``X`` may be the address of a C-contiguous
        float32 ``(batch, n)`` tensor, ``Y`` a C-contiguous float32 ``(batch, m)`` array,
        ``bias`` None or float32 ``(m,)``. Formats with native fused kernels override it."""
        return None

    def _operand(self, X: np.ndarray, op: str, axis: int) -> np.ndarray:
        """``X`` as C-contiguous float32 after checking it is 2-D with ``n`` along
        ``axis``."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[axis] != self.shape[1]:
            want = f"({self.shape[1]}, b)" if axis == 0 else f"(b, {self.shape[1]})"
            raise ValueError(f"{op} expects X of shape {want}, got {X.shape}")
        return np.ascontiguousarray(X, dtype=np.float32)

    @abstractmethod
    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fill ``y`` (m,) with ``W @ x``; x is C-contiguous float32 (n,), m > 0."""

    @abstractmethod
    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Fill ``Y`` (m, b) with ``W @ X``; X is C-contiguous float32 (n, b), Y non-empty."""

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Fill ``Y`` (b, m) with ``X @ Wᵀ``; X is C-contiguous float32 (b, n), Y
        C-contiguous and non-empty. Default: ``_matmul`` on the transposed operands
        (two copies); formats that can write row-major outputs directly override it."""
        if X.shape[0] == 1:
            self._matvec(X[0], Y[0])
            return
        Yt = np.empty((Y.shape[1], Y.shape[0]), dtype=np.float32)
        self._matmul(np.ascontiguousarray(X.T), Yt)
        Y[...] = Yt.T

    # ---- storage --------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of every stored array (codebooks and code tables included)."""
        return int(sum(self._stored_nbytes(a) for a in self.arrays))

    def _stored(self, name: str) -> np.ndarray:
        """Array ``name`` as it is stored: pointer arrays narrowed to the smallest dtype
        that holds their largest entry, every other array as it is."""
        arr = getattr(self, name)
        if name in self.pointer_arrays and arr.dtype.kind == "u":
            dt = index_dtype(int(arr.max()) if arr.size else 0)
            if dt != arr.dtype:
                return arr.astype(dt)
        return arr

    def _stored_nbytes(self, name: str) -> int:
        arr = getattr(self, name)
        if name in self.pointer_arrays and arr.dtype.kind == "u":
            return arr.size * index_dtype(int(arr.max()) if arr.size else 0).itemsize
        return int(arr.nbytes)

    def _index_bounds(self) -> dict[str, int]:
        """Largest valid entry of each index array (from the shape and the other arrays'
        lengths, not from the data); those arrays get the smallest dtype holding it."""
        return {}

    def _canonicalise(self) -> None:
        """Give index and pointer arrays their canonical run-time dtypes (see
        ``canonical_index`` / ``canonical_pointer``) and every array its own writable,
        C-contiguous memory layout, so no file can make the kernels compile a new
        specialisation. Runs before ``check()``; arrays it cannot convert are left for
        ``check()`` to reject."""
        for a in self.pointer_arrays:
            setattr(self, a, canonical_pointer(getattr(self, a, None)))
        try:
            bounds = self._index_bounds()
        except (AttributeError, TypeError, IndexError, ValueError):
            bounds = {}  # malformed arrays: check() names the problem
        for a, bound in bounds.items():
            setattr(self, a, canonical_index(getattr(self, a, None), bound))
        for a in self.arrays:
            arr = getattr(self, a, None)
            if isinstance(arr, np.ndarray) and not (arr.flags.writeable
                                                    and arr.flags.c_contiguous):
                setattr(self, a, np.array(arr, order="C"))

    @property
    def bits_per_weight(self) -> float:
        """Stored bits divided by the number of matrix entries."""
        size = self.shape[0] * self.shape[1]
        return 8.0 * self.nbytes / size if size else 0.0

    def to_buffers(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Stored arrays by name, and JSON attributes (``shape``, ``format``, ``version``)."""
        bufs = {a: self._stored(a) for a in self.arrays}
        attrs: dict[str, Any] = {
            "format": self.format_id,
            "version": self.version,
            "shape": list(self.shape),
        }
        for a in self.attrs:
            attrs[a] = getattr(self, a)
        return bufs, attrs

    @classmethod
    def from_buffers(cls, bufs: dict[str, np.ndarray], attrs: dict[str, Any]) -> CompactMatrix:
        """Rebuild from ``to_buffers()`` output; runs ``check()`` before returning."""
        fmt = attrs.get("format", cls.format_id)
        if fmt != cls.format_id:
            raise FormatError(f"buffers are format {fmt!r}, not {cls.format_id!r}")
        ver = attrs.get("version", cls.version)
        if ver != cls.version:
            raise FormatError(f"{cls.format_id}: unsupported version {ver!r} (have {cls.version})")
        shape = attrs.get("shape")
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != 2
            or not all(is_int(s, 0, numpy=False) for s in shape)
        ):
            raise FormatError(f"{cls.format_id}: bad shape {shape!r}")
        missing = [a for a in cls.arrays if a not in bufs]
        if missing:
            raise FormatError(f"{cls.format_id}: missing arrays {missing}")
        extra = [a for a in bufs if a not in cls.arrays]
        if extra:
            raise FormatError(f"{cls.format_id}: unexpected arrays {extra}")
        fields: dict[str, Any] = {}
        for a in cls.arrays:
            arr = bufs[a]
            if not isinstance(arr, np.ndarray):
                raise FormatError(f"{cls.format_id}: array {a!r} is not an ndarray")
            fields[a] = np.ascontiguousarray(arr)
        for a in cls.attrs:
            if a not in attrs:
                raise FormatError(f"{cls.format_id}: missing attribute {a!r}")
            fields[a] = attrs[a]
        obj = cls.__new__(cls)
        obj.shape = (int(shape[0]), int(shape[1]))
        for k, v in fields.items():
            setattr(obj, k, v)
        obj._canonicalise()
        obj.check()
        obj._prepare()
        return obj

    # ---- validation -----------------------------------------------------------------
    def check(self) -> None:
        """Validate every stored array; raise ``FormatError`` naming the first problem."""
        for a in self.arrays:
            arr = getattr(self, a, None)
            if not isinstance(arr, np.ndarray):
                raise FormatError(f"{self.format_id}: array {a!r} is missing")
            if arr.ndim != 1 and a not in self._multi_dim_arrays():
                raise FormatError(f"{self.format_id}: array {a!r} must be 1-D, got {arr.shape}")
        self._check()

    def _multi_dim_arrays(self) -> tuple[str, ...]:
        """Names of arrays allowed to have more than one dimension."""
        return ()

    @abstractmethod
    def _check(self) -> None:
        """Format-specific validation (dtypes, lengths, ranges, monotone pointers)."""

    def _prepare(self) -> None:  # noqa: B027 (optional hook, deliberately empty)
        """Build derived runtime caches (never stored); called after construction."""

    # ---- cost model -----------------------------------------------------------------
    def cost(self, batch: int = 1, backend: str | None = None) -> Cost:
        """Counts of adds, multiplies and array reads/writes of ``W @ X`` with ``batch``
        columns on kernel path ``backend`` (``avx512``, ``avx2``, ``portable``,
        ``numba``; default: the active one, :func:`compactnn.kernels.backend.backend`):
        what that path's kernel does, priced by :func:`compactnn.cost.energy_pj`."""
        if not is_int(batch, 1):
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        if backend is None:
            backend = kernel_backend.backend()
        elif backend not in kernel_backend.BACKENDS:
            raise ValueError(f"unknown kernel path {backend!r}; choose from "
                             f"{', '.join(kernel_backend.BACKENDS)}")
        return self._cost(int(batch), backend)

    @abstractmethod
    def _cost(self, batch: int, backend: str) -> Cost:
        """``cost()`` for a checked batch and a kernel path name."""

    # ---- misc -----------------------------------------------------------------------
    def _cached_kernel(self, build: Callable[[Any], Any]) -> Any:
        """``build(native module)``, the native kernel object, on first use and kept
        (copies and pickles leave it out), or None where the native extension is not in
        use (the numba path)."""
        nat = kernel_backend.native()
        if nat is None:
            return None
        kern = self.__dict__.get("_kernel")
        if kern is None:
            kern = self._kernel = build(nat)
        return kern

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave out the native kernel object (rebuilt on first use)."""
        state = self.__dict__.copy()
        state.pop("_kernel", None)
        return state

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        a, b = self.to_buffers(), other.to_buffers()  # type: ignore[union-attr]
        return a[1] == b[1] and all(
            a[0][k].dtype == b[0][k].dtype
            and a[0][k].shape == b[0][k].shape
            and a[0][k].tobytes() == b[0][k].tobytes()
            for k in self.arrays
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.format_id} shape={self.shape} "
            f"nbytes={self.nbytes} ({self.bits_per_weight:.3f} bits/weight)>"
        )
