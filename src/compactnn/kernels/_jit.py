"""The one place where numba flags are set.

``jit`` compiles a kernel with on-disk caching. ``FASTMATH`` deliberately leaves out
``reassoc``: with it LLVM turns ``x[col[j]]`` loops into AVX-512 gathers that run about
2x slower than scalar code on the CPUs we target; kernels use several independent
accumulators instead. Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python
(coverage, debugging).
"""

from __future__ import annotations

import numba

FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}


def jit(fn=None, *, parallel: bool = False):
    """``numba.njit`` with caching and the project's fastmath flags."""

    def wrap(f):
        return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=parallel)(f)

    return wrap(fn) if fn is not None else wrap


inline = numba.njit(inline="always", cache=True, nogil=True, fastmath=FASTMATH)
"""``jit`` for small helpers, inlined at numba-IR level into the kernels that call
them: a call to a separately compiled helper taking arrays costs ~40 ns (reference
counting), ten times a whole decode. Same flags as :func:`jit`."""

prange = numba.prange
