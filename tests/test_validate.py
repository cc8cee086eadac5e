"""compactnn._validate: the shared argument validators (one message style, the caller's
exception class)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compactnn import _validate as v


class MyError(ValueError):
    pass


@pytest.mark.parametrize("value,lo,hi,ok", [
    (3, 1, None, True), (np.int64(3), 1, None, True), (np.uint8(0), 0, 0, True),
    (True, 0, None, False), (np.bool_(True), 0, None, False), (0, 1, None, False),
    (5, None, 4, False), (2.0, None, None, False), ("2", None, None, False),
    (None, None, None, False),
])
def test_is_int(value, lo, hi, ok):
    assert v.is_int(value, lo, hi) is ok


def test_numpy_false_admits_python_ints_only():
    assert v.is_int(3, numpy=False) and not v.is_int(np.int64(3), numpy=False)


@given(st.integers(-10**20, 10**20), st.integers(-100, 100))
def test_integer_agrees_with_is_int(x, lo):
    if x >= lo:
        assert v.integer("n", x, lo) == x and type(v.integer("n", x, lo)) is int
    else:
        with pytest.raises(ValueError, match=rf"^n must be an integer >= {lo}, got {x}$"):
            v.integer("n", x, lo)


def test_messages_and_error_classes():
    with pytest.raises(MyError, match=r"^k must be an integer >= 1, got True$"):
        v.integer("k", True, 1, error=MyError)
    with pytest.raises(ValueError, match=r"^b must be an integer in \[1, 4\], got 5$"):
        v.integer("b", 5, 1, 4)
    with pytest.raises(ValueError, match=r"^x must be an integer <= 4, got 5$"):
        v.integer("x", 5, None, 4)
    with pytest.raises(ValueError, match=r"^x must be an integer, got 'a'$"):
        v.integer("x", "a")
    with pytest.raises(TypeError, match=r"^s must be an integer in \[0, 2\*\*63\), got -1$"):
        v.seed("s", -1, error=TypeError)
    assert v.seed("s", 2**63 - 1) == v.MAX_SEED
    with pytest.raises(ValueError):
        v.seed("s", 2**63)
    with pytest.raises(ValueError, match=r"^p must be a number in \[0, 100\), got 100$"):
        v.number("p", 100, 0, 100, hi_open=True)
    with pytest.raises(ValueError, match=r"^p must be a percentage in \[0, 100\), got -1$"):
        v.number("p", -1, 0, 100, hi_open=True, kind="a percentage")
    with pytest.raises(ValueError, match=r"^p must be a number > 0, got 0$"):
        v.number("p", 0, 0, lo_open=True)
    with pytest.raises(ValueError):
        v.number("p", math.nan, 0)
    assert v.number("p", np.float32(0.5), 0, 1) == 0.5
    with pytest.raises(ValueError, match=r"^lr must be a positive number, got 0$"):
        v.positive("lr", 0)
    assert v.positive("wd", 0, zero=True) == 0
    with pytest.raises(ValueError, match=r"^wd must be a non-negative number, got -1$"):
        v.positive("wd", -1, zero=True)
    with pytest.raises(ValueError):
        v.positive("lr", True)
    with pytest.raises(MyError, match=r"^shared must be true or false, got 'yes'$"):
        v.flag("shared", "yes", error=MyError)
    assert v.flag("shared", False) is False
    with pytest.raises(ValueError, match=r"^mode must be one of 'a', 'b', got 'c'$"):
        v.choice("mode", "c", ("a", "b"))
    with pytest.raises(ValueError):
        v.choice("mode", ["a"], ("a", "b"))  # unhashable: a clear error, not a TypeError
    assert v.choice("mode", "b", ("a", "b")) == "b"


def test_imports_nothing_from_the_package():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(v.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.startswith("compactnn")]
