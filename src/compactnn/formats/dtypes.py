"""Index and pointer dtypes: the smallest unsigned dtype for a bound, and the canonical
run-time dtypes that kernels see (``CompactMatrix`` runs them on every array)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["index_dtype", "canonical_index", "canonical_pointer", "KERNEL_INDEX_DTYPES",
           "KERNEL_POINTER_DTYPES"]

_UINTS = (np.uint8, np.uint16, np.uint32, np.uint64)


def index_dtype(max_value: int) -> np.dtype:
    """Smallest of uint8/16/32/64 that holds every integer in ``[0, max_value]``."""
    max_value = int(max_value)
    for dt in _UINTS:
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"index range {max_value} does not fit in 64 bits")


KERNEL_INDEX_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32))
"""Dtypes an index array (column, codebook, group index) has at run time: the smallest
that holds its bound (uint64 only for a side beyond 2**32, which files refuse)."""
KERNEL_POINTER_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64))
"""Dtypes a pointer array (row starts, group starts, bit offsets) has at run time."""


def canonical_index(arr: Any, bound: int) -> Any:
    """An unsigned index array whose entries must lie in ``[0, bound]``, in the
    smallest dtype that holds ``bound`` (derived from shapes, never from the data), so
    the dtypes reaching the kernels are a small fixed set whatever a file stores.
    Arrays that are not unsigned or hold a larger value are returned unchanged (for
    ``check()`` to reject)."""
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "u":
        return arr
    target = index_dtype(max(int(bound), 0))
    return _convert(arr, target)


def canonical_pointer(arr: Any) -> Any:
    """An unsigned pointer array as uint32 (uint64 when its largest entry needs it)."""
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "u":
        return arr
    top = int(arr.max()) if arr.size else 0
    return _convert(arr, np.dtype(np.uint32) if top <= 0xFFFFFFFF else np.dtype(np.uint64))


def _convert(arr: np.ndarray, target: np.dtype) -> np.ndarray:
    if arr.dtype == target and arr.flags.c_contiguous and arr.flags.writeable:
        return arr
    if arr.size and int(arr.max()) > np.iinfo(target).max:
        return arr
    return np.array(arr, dtype=target, order="C")
