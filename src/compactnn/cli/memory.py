"""How the command line's process allocates: memory freed is given back.

glibc's ``malloc`` serves a block above its mmap threshold with its own ``mmap`` and
unmaps it on ``free``, but it raises that threshold (up to 32 MiB) each time such a
block is freed, so after the first few tensors of a model are freed, blocks of a
layer's size come from the heap, and a heap whose top is in use keeps every freed
block below it resident. A compression run allocates and frees a layer's worth of
temporaries many times (a layer's dense weight, its GPTQ solve, a batch's
activations), so the resident set grew stage after stage to several times what was
alive (the ``after`` column of ``benchmarks/any_model.py --stages``).
:func:`lean_allocator` fixes the threshold (256 KiB: blocks that size and larger are
mapped and unmapped, never kept), keeps one heap (``M_ARENA_MAX``) and trims the
heap's free top above 1 MiB; the allocated values are the same, so results are too.
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["lean_allocator", "MMAP_THRESHOLD"]

MMAP_THRESHOLD = 1 << 18
"""Blocks of at least this many bytes are mapped on their own and unmapped when freed."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def lean_allocator() -> bool:
    """Set glibc's allocator as the module docstring says; whether it was set (False
    when the C library is not glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 20)
    ok &= libc.mallopt(_M_ARENA_MAX, 1)
    return bool(ok)
