"""Validation shared by the formats: ``FormatError`` (what ``check()`` raises), the
dense input check and the ``require_*`` helpers that ``_check`` implementations use."""

from __future__ import annotations

from typing import Any

import numpy as np

from compactnn.coding.streams import padding_is_zero, stream_words

__all__ = ["FormatError", "as_dense_input", "require_dtype", "require_len",
           "require_pointers", "require_stream", "require_below", "require_finite"]


class FormatError(ValueError):
    """Stored arrays of a compact matrix are inconsistent (raised by ``check()``)."""


def as_dense_input(W: Any) -> np.ndarray:
    """Validate a dense input matrix: 2-D, float32, finite. Returns a C-contiguous view."""
    if not isinstance(W, np.ndarray):
        raise TypeError(f"expected a numpy ndarray, got {type(W).__name__}")
    if W.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got {W.ndim}-D with shape {W.shape}")
    if W.dtype != np.float32:
        raise TypeError(f"expected float32 weights, got {W.dtype}")
    if W.size and not np.isfinite(W).all():
        raise ValueError("matrix contains NaN or Inf; compact formats store finite values only")
    return np.ascontiguousarray(W)


def require_dtype(fmt: str, name: str, arr: np.ndarray, kinds: str) -> None:
    """Raise unless ``arr.dtype.kind`` is one of ``kinds`` ('u' unsigned, 'f' float)."""
    if arr.dtype.kind not in kinds or arr.dtype.byteorder not in ("=", "|", "<"):
        raise FormatError(f"{fmt}: array {name!r} has dtype {arr.dtype}, expected kind {kinds!r}")
    if kinds == "f" and arr.dtype != np.float32:
        raise FormatError(f"{fmt}: array {name!r} must be float32, got {arr.dtype}")


def require_len(fmt: str, name: str, arr: np.ndarray, length: int) -> None:
    """Raise unless ``len(arr) == length``."""
    if arr.shape[0] != length:
        raise FormatError(f"{fmt}: array {name!r} has length {arr.shape[0]}, expected {length}")


def require_pointers(fmt: str, name: str, ptr: np.ndarray, length: int, end: int) -> None:
    """Validate a pointer array: unsigned, ``length`` long, starts at 0, non-decreasing,
    ends at ``end``."""
    require_dtype(fmt, name, ptr, "u")
    require_len(fmt, name, ptr, length)
    if ptr[0] != 0:
        raise FormatError(f"{fmt}: pointer array {name!r} must start at 0")
    if length > 1 and np.any(ptr[1:] < ptr[:-1]):
        raise FormatError(f"{fmt}: pointer array {name!r} is not non-decreasing")
    if int(ptr[-1]) != end:
        raise FormatError(f"{fmt}: pointer array {name!r} ends at {int(ptr[-1])}, expected {end}")


def require_stream(fmt: str, name: str, words: np.ndarray, total: int) -> None:
    """Raise unless ``words`` holds a ``total``-bit stream plus its padding
    (:func:`compactnn.coding.streams.stream_words` words) and the padding is zero."""
    need = stream_words(total)
    if words.shape[0] < need:
        raise FormatError(
            f"{fmt}: array {name!r} is truncated: the bit stream has {total} bits, which "
            f"needs {need} words with padding, got {words.shape[0]}"
        )
    if words.shape[0] > need:
        raise FormatError(f"{fmt}: array {name!r} has {words.shape[0]} words, expected {need}")
    if not padding_is_zero(words, total):
        raise FormatError(f"{fmt}: array {name!r} has non-zero padding bits")


def require_below(fmt: str, name: str, idx: np.ndarray, bound: int) -> None:
    """Raise unless every entry of the unsigned array ``idx`` is < ``bound``."""
    require_dtype(fmt, name, idx, "u")
    if idx.size and int(idx.max()) >= bound:
        raise FormatError(
            f"{fmt}: index array {name!r} has value {int(idx.max())} out of range [0, {bound})"
        )


def require_finite(fmt: str, name: str, arr: np.ndarray) -> None:
    """Raise unless ``arr`` is float32 and finite."""
    require_dtype(fmt, name, arr, "f")
    if arr.size and not np.isfinite(arr).all():
        raise FormatError(f"{fmt}: array {name!r} has NaN or Inf")
