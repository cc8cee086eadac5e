"""The one place where numba flags are set, and where numba is imported.

``jit`` compiles a kernel with on-disk caching. ``FASTMATH`` deliberately leaves out
``reassoc``: with it LLVM turns ``x[col[j]]`` loops into AVX-512 gathers that run about
2x slower than scalar code on the CPUs we target; kernels use several independent
accumulators instead. Set ``NUMBA_DISABLE_JIT=1`` to run every kernel as plain Python
(coverage, debugging).

numba is imported on first use, not at import (``import compactnn.formats`` stays
cheap): ``jit``, ``inline``, ``prange`` and ``deferred`` return :class:`Deferred`
placeholders. A placeholder becomes the real numba object the first time it is called
or read (``resolve``); before numba compiles a function, every placeholder the
function names (a global, a closure cell, or an attribute of a module it names) is
replaced by its real object in place, so compiled code only ever sees numba objects,
and a resolved kernel also replaces its placeholder in its module (later
``module.kernel`` lookups reach the dispatcher directly).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["FASTMATH", "Deferred", "deferred", "jit", "inline", "prange", "numba_threads"]

FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}


class Deferred:
    """A numba object made by ``factory()`` on first use; calls and attribute reads
    go to it."""

    def __init__(self, factory: Callable[[], Any], source: Callable | None = None) -> None:
        self._factory = factory
        self._value: Any = None
        self._source = source
        self.__wrapped__ = source
        self.__name__ = getattr(source, "__name__", "deferred")
        self.__qualname__ = getattr(source, "__qualname__", self.__name__)
        self.__doc__ = getattr(source, "__doc__", None)
        self.__module__ = getattr(source, "__module__", __name__)

    def resolve(self) -> Any:
        """The real object (imports numba and builds it the first time)."""
        if self._value is None:
            if self._source is not None:
                _resolve_names(self._source)
            value = self._factory()
            self._value = value
            module = sys.modules.get(self.__module__)
            if module is not None and getattr(module, self.__name__, None) is self:
                setattr(module, self.__name__, value)
        return self._value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # only for names not set above
        if name.startswith("__") or name in ("_factory", "_value", "_source"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        state = "resolved" if self._value is not None else "not yet compiled"
        return f"<Deferred {self.__qualname__} ({state})>"


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _resolve_names(fn: Callable) -> None:
    """Replace every placeholder that ``fn`` names by its real object."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    names = {n for c in _codes(code) for n in c.co_names}
    space = fn.__globals__
    for name in names:
        value = space.get(name)
        if isinstance(value, Deferred):
            space[name] = value.resolve()
        elif isinstance(value, types.ModuleType):
            for attr in names:
                inner = value.__dict__.get(attr)
                if isinstance(inner, Deferred):
                    setattr(value, attr, inner.resolve())
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, Deferred):
            cell.cell_contents = value.resolve()


def deferred(factory: Callable[[], Any]) -> Deferred:
    """A placeholder for ``factory()``, a numba object that needs numba to be made
    (an intrinsic, a type); ``factory`` imports numba itself."""
    return Deferred(factory, None)


def jit(fn: Callable | None = None, *, parallel: bool = False):
    """``numba.njit`` with caching and the project's fastmath flags, compiled on the
    first call."""

    def wrap(f: Callable) -> Deferred:
        def make() -> Any:
            import numba

            return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=parallel)(f)

        return Deferred(make, f)

    return wrap(fn) if fn is not None else wrap


def inline(f: Callable) -> Deferred:
    """``jit`` for small helpers, inlined at numba-IR level into the kernels that call
    them: a call to a separately compiled helper taking arrays costs ~40 ns (reference
    counting), ten times a whole decode. Same flags as :func:`jit`."""

    def make() -> Any:
        import numba

        return numba.njit(inline="always", cache=True, nogil=True, fastmath=FASTMATH)(f)

    return Deferred(make, f)


def _prange() -> Any:
    import numba

    return numba.prange


prange = deferred(_prange)
"""``numba.prange`` (a parallel ``range`` inside ``jit(parallel=True)`` kernels)."""


def numba_threads() -> int:
    """numba's current thread count (``numba.get_num_threads()``)."""
    import numba

    return numba.get_num_threads()
