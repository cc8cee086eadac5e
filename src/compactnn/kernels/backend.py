"""Which kernel path runs the products, and the one thread setting.

The native library (``compactnn.kernels._native``, C with SIMD intrinsics, built at
install) has an AVX-512, an AVX2+FMA and a portable C version of every kernel on
x86-64, and NEON versions of the index-map kernels on aarch64 (level ``neon``; the
other kernels run their portable C there); the best the CPU supports is chosen at
import. ``COMPACTNN_KERNELS`` overrides it: ``avx512``, ``avx2``, ``neon``,
``portable`` or ``numba`` (the numba kernels, also the path when the extension was
not built). :func:`use` switches at run time (tests run every
path on one machine).

Threads: native kernels run on the OpenMP runtime that torch and MKL use, so a
forward pass that interleaves compact layers and torch ops hands work between no
pools. :func:`set_num_threads` sets torch's, the kernels', numba's and OpenBLAS's
thread counts together; by default the kernels follow torch's setting.

>>> backend() in BACKENDS
True
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

from compactnn._validate import integer

__all__ = ["BACKENDS", "backend", "native", "levels", "use", "set_num_threads",
           "get_num_threads", "threads", "describe"]

BACKENDS = ("portable", "avx2", "avx512", "neon", "numba")
"""Kernel paths; all but ``numba`` are levels of the native library (0 to 3)."""

try:
    from compactnn.kernels import _native as _ext
    _IMPORT_ERROR = ""
except ImportError as e:  # built without a C compiler
    _ext = None
    _IMPORT_ERROR = str(e)

_active = "numba"


def _select(name: str) -> None:
    global _active
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel path {name!r}; choose from {', '.join(BACKENDS)}")
    if name != "numba":
        if _ext is None:
            raise ValueError(f"kernel path {name!r} needs the native extension, which is not "
                             f"built ({_IMPORT_ERROR})")
        if name not in levels():
            raise ValueError(f"kernel path {name!r} is not supported by this CPU "
                             f"(best: {BACKENDS[_ext.cpu_level()]})")
        _ext.set_level(BACKENDS.index(name))
    _active = name


def levels() -> list[str]:
    """The native levels this CPU runs (x86-64: portable up to its best of avx2 and
    avx512; aarch64: portable and neon); empty without the extension."""
    if _ext is None:
        return []
    best = _ext.cpu_level()
    if BACKENDS[best] == "neon":
        return ["portable", "neon"]
    return list(BACKENDS[:best + 1])


def _initial() -> str:
    env = os.environ.get("COMPACTNN_KERNELS", "").strip().lower()
    if env and env != "auto":
        try:
            _select(env)
            return env
        except ValueError as e:
            warnings.warn(f"COMPACTNN_KERNELS ignored: {e}", RuntimeWarning, stacklevel=3)
    if _ext is None:
        warnings.warn("compactnn's native kernels are not built (no C compiler at install?); "
                      "running on the numba kernels", RuntimeWarning, stacklevel=3)
        return "numba"
    name = BACKENDS[_ext.cpu_level()]
    _select(name)
    return name


_active = _initial()


def backend() -> str:
    """The active kernel path: ``avx512``, ``avx2``, ``portable`` or ``numba``."""
    return _active


def native() -> ModuleType | None:
    """The native extension when a native path is active, else ``None``."""
    return None if _active == "numba" else _ext


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Run the products of the ``with`` block on kernel path ``name``.

    Matrices keep runtime arrays for both paths, so switching is cheap."""
    before = _active
    _select(name)
    try:
        yield
    finally:
        _select(before)


def describe() -> str:
    """One line for humans: the active path, the best native level and threads."""
    if _ext is None:
        return f"kernels: numba (native extension not built: {_IMPORT_ERROR})"
    best = BACKENDS[_ext.cpu_level()]
    return f"kernels: {_active} (native, CPU supports {best}; {get_num_threads()} threads)"


_threads: int | None = None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads everywhere: torch (and MKL), the native kernels, numba and
    numpy's OpenBLAS. One setting, so no pool is left larger than the others."""
    global _threads
    integer("threads", n, 1, numpy=False)
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    if _ext is not None:
        _ext.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(limits=n)
    _threads = n


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """:func:`set_num_threads` for the ``with`` block; every pool's count is restored
    afterwards."""
    global _threads
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    integer("thread count", n, 1, numpy=False)
    old = torch.get_num_threads(), numba.get_num_threads(), _threads
    try:
        with threadpool_limits(limits=n):
            set_num_threads(n)
            yield
    finally:
        torch.set_num_threads(old[0])
        numba.set_num_threads(old[1])
        _threads = old[2]
        if _ext is not None:
            _ext.set_num_threads(old[2] or 0)


def get_num_threads() -> int:
    """Threads the kernels use: the last :func:`set_num_threads`, else OpenMP's default
    (which ``torch.set_num_threads`` also sets)."""
    if _threads is not None:
        return _threads
    if _ext is not None:
        return int(_ext.get_num_threads())
    return os.cpu_count() or 1
