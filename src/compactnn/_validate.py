"""Argument validators shared by every layer of the package (imports nothing from it).

One message style, ``<name> must be <what>, got <value!r>``, raised as the caller's
exception class (``error``: ``ValueError`` by default; ``RecipeError``, ``FormatError``,
``CompactFileError`` where those apply). Integers are Python or NumPy integers, never a
``bool`` (``True`` is an ``int`` to Python, not a count to a user); ``numpy=False``
admits Python ``int`` only (values headed for JSON).

>>> integer("k", 4, 1)
4
>>> integer("k", True, 1)
Traceback (most recent call last):
    ...
ValueError: k must be an integer >= 1, got True
>>> number("p", 100, 0, 100, hi_open=True)
Traceback (most recent call last):
    ...
ValueError: p must be a number in [0, 100), got 100
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any

__all__ = ["MAX_SEED", "is_int", "is_number", "integer", "seed", "number", "positive", "flag",
           "choice"]

MAX_SEED = 2**63 - 1  # seeds are stored as int64


def is_int(v: Any, lo: int | None = None, hi: int | None = None, *,
           numpy: bool = True) -> bool:
    """Whether ``v`` is an integer, not a bool, in ``[lo, hi]`` (either bound optional)."""
    kind = numbers.Integral if numpy else int
    return bool(isinstance(v, kind) and not isinstance(v, bool)
                and (lo is None or v >= lo) and (hi is None or v <= hi))


def is_number(v: Any) -> bool:
    """Whether ``v`` is a real number (int or float, NumPy's too), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _bounds(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi}"
    return ""


def integer(name: str, v: Any, lo: int | None = None, hi: int | None = None, *,
            error: type[Exception] = ValueError, numpy: bool = True) -> int:
    """``v`` as an ``int`` if it is an integer (not a bool) in ``[lo, hi]``; else raise
    ``error("<name> must be an integer >= lo, got v")``."""
    if not is_int(v, lo, hi, numpy=numpy):
        raise error(f"{name} must be an integer{_bounds(lo, hi)}, got {v!r}")
    return int(v)


def seed(name: str, v: Any, *, error: type[Exception] = ValueError) -> int:
    """``v`` as an ``int`` if it is an integer in ``[0, 2**63)`` (a seed a file can store);
    else raise ``error("<name> must be an integer in [0, 2**63), got v")``."""
    if not is_int(v, 0, MAX_SEED):
        raise error(f"{name} must be an integer in [0, 2**63), got {v!r}")
    return int(v)


def number(name: str, v: Any, lo: float | None = None, hi: float | None = None, *,
           lo_open: bool = False, hi_open: bool = False, kind: str = "a number",
           error: type[Exception] = ValueError) -> float:
    """``v`` if it is a number (not a bool) within the bounds (closed unless
    ``lo_open`` / ``hi_open``); else raise ``error("<name> must be <kind> in [lo, hi),
    got v")`` (``kind``: ``"a number"``, or e.g. ``"a percentage"``). NaN is never within
    bounds."""
    ok = is_number(v) and v == v
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        raise error(f"{name} must be {kind}{_bounds(lo, hi, lo_open, hi_open)}, got {v!r}")
    return v


def positive(name: str, v: Any, *, zero: bool = False,
             error: type[Exception] = ValueError) -> float:
    """``v`` if it is a number > 0 (``zero``: >= 0); else raise
    ``error("<name> must be a positive number, got v")`` (``non-negative`` with ``zero``)."""
    if not (is_number(v) and (v >= 0 if zero else v > 0)):
        kind = "non-negative" if zero else "positive"
        raise error(f"{name} must be a {kind} number, got {v!r}")
    return v


def flag(name: str, v: Any, *, error: type[Exception] = ValueError) -> bool:
    """``v`` if it is a bool; else raise ``error("<name> must be true or false, got v")``."""
    if not isinstance(v, bool):
        raise error(f"{name} must be true or false, got {v!r}")
    return v


def choice(name: str, v: Any, options: Collection[str], *,
           error: type[Exception] = ValueError) -> str:
    """``v`` if it is one of ``options``; else raise
    ``error("<name> must be one of 'a', 'b', got v")``."""
    if not isinstance(v, str) or v not in options:
        raise error(f"{name} must be one of {', '.join(map(repr, options))}, got {v!r}")
    return v
