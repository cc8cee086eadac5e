"""One conformance suite that every registered format passes (scipy.sparse style)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactnn import formats
from compactnn.formats import FormatError

from .strategies import arbitrary, low_entropy

FORMATS = formats.registered()  # every registered format, automatic or not
EPS32 = float(np.finfo(np.float32).eps)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape
            and bool((a.view(np.uint32) == b.view(np.uint32)).all()))


def check_products(M, W: np.ndarray, rng: np.random.Generator) -> None:
    """matvec/matmul against a float64 reference with a worst-case summation bound."""
    m, n = W.shape
    x = rng.standard_normal(n).astype(np.float32)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    W64 = W.astype(np.float64)
    mode = np.float64(np.abs(W).max()) if W.size else 0.0
    rows = np.ascontiguousarray(X.T)  # the same inputs as rows: X @ Wᵀ = (W @ X)ᵀ
    for got, ref, xs in ((M.matvec(x), W64 @ x, np.abs(x)),
                         (M.matmul(X), W64 @ X, np.abs(X)),
                         (M.rmatmul(rows).T, W64 @ X, np.abs(X)),
                         (M.rmatmul(rows[:1]).T, W64 @ X[:, :1], np.abs(X[:, :1]))):
        assert got.dtype == np.float32 and got.shape == ref.shape
        bound = 4 * (n + 2) * EPS32 * (np.abs(W64) @ xs + mode * xs.sum(axis=0)) + 1e-30
        assert (np.abs(got - ref) <= bound).all(), np.abs(got - ref).max()


def encode(fid: str, W: np.ndarray):
    """``from_dense`` of format ``fid``; None (after checking the refusal) for a matrix
    with more distinct values than the format's ``max_values``."""
    F = formats.get(fid)
    if F.max_values is not None and np.unique(W.view(np.uint32)).size > F.max_values:
        with pytest.raises(FormatError, match="distinct values"):
            F.from_dense(W)
        return None
    return F.from_dense(W)


@pytest.mark.parametrize("fid", FORMATS)
@SETTINGS
@given(W=low_entropy() | arbitrary())
def test_round_trip_bit_identical(fid, W):
    M = encode(fid, W)
    if M is None:
        return
    assert M.shape == W.shape
    assert same_bits(M.to_dense(), W)


@pytest.mark.parametrize("fid", FORMATS)
@SETTINGS
@given(W=low_entropy(moderate=True), seed=st.integers(0, 2**16))
def test_products_match_float64_reference(fid, W, seed):
    M = encode(fid, W)
    if M is None:
        return
    check_products(M, W, np.random.default_rng(seed))


@pytest.mark.parametrize("fid", FORMATS)
@SETTINGS
@given(W=low_entropy() | arbitrary())
def test_buffers_round_trip_and_nbytes(fid, W):
    F = formats.get(fid)
    M = encode(fid, W)
    if M is None:
        return
    bufs, attrs = M.to_buffers()
    assert M.nbytes == sum(b.nbytes for b in bufs.values())
    assert attrs["format"] == fid and attrs["shape"] == list(W.shape)
    M2 = F.from_buffers({k: v.copy() for k, v in bufs.items()}, dict(attrs))
    assert M2 == M
    assert same_bits(M2.to_dense(), W)
    M.check()


@pytest.mark.parametrize("fid", FORMATS)
@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 1), (1, 9), (9, 1)])
@pytest.mark.parametrize("fill", [0.0, -0.0, 2.5])
def test_edge_shapes_and_constant(fid, shape, fill):
    W = np.full(shape, fill, np.float32)
    M = formats.get(fid).from_dense(W)
    assert same_bits(M.to_dense(), W)
    check_products(M, W, np.random.default_rng(0))


@pytest.mark.parametrize("fid", FORMATS)
def test_many_distinct_values_and_wide(fid):
    """More than 65536 distinct values; n > 65535 (index widths grow)."""
    rng = np.random.default_rng(1)
    W = rng.standard_normal((2, 70001)).astype(np.float32)
    W[:, ::7] = 0
    M = encode(fid, W)
    if M is None:
        return
    assert same_bits(M.to_dense(), W)
    check_products(M, W, rng)


@pytest.mark.parametrize("fid", FORMATS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite(fid, bad):
    W = np.zeros((3, 3), np.float32)
    W[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        formats.get(fid).from_dense(W)


@pytest.mark.parametrize("fid", FORMATS)
def test_rejects_bad_input(fid):
    F = formats.get(fid)
    with pytest.raises(TypeError):
        F.from_dense(np.zeros((3, 3), np.float64))
    with pytest.raises(ValueError):
        F.from_dense(np.zeros(3, np.float32))
    M = F.from_dense(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError):
        M.matvec(np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        M.matmul(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"rmatmul expects X of shape \(b, 3\)"):
        M.rmatmul(np.zeros((2, 4), np.float32))
    assert M.rmatmul(np.zeros((0, 3), np.float32)).shape == (0, 3)


def corrupted_variants(M):
    """Generic corruptions every format must reject: each array truncated by one
    element, a float array widened to float64, an unsigned array made signed."""
    bufs, attrs = M.to_buffers()
    for name, arr in bufs.items():
        if arr.shape[0] > 0:
            b = dict(bufs)
            b[name] = arr[:-1] if arr.ndim == 1 else arr[:-1, :]
            yield f"{name} truncated", b, attrs
        b = dict(bufs)
        if arr.dtype.kind == "f":
            b[name] = arr.astype(np.float64)
        else:
            b[name] = arr.astype(np.int64)
        yield f"{name} dtype", b, attrs
    b = dict(bufs)
    b.pop(next(iter(bufs)))
    yield "missing array", b, attrs
    yield "bad version", bufs, {**attrs, "version": 999}
    yield "bad shape", bufs, {**attrs, "shape": [-1, 3]}


@pytest.mark.parametrize("fid", FORMATS)
def test_check_rejects_generic_corruption(fid):
    rng = np.random.default_rng(2)
    W = rng.choice(np.array([0, 0, 0, 0.5, -1.25, 2.0], np.float32), size=(17, 23))
    F = formats.get(fid)
    M = F.from_dense(W)
    for what, bufs, attrs in corrupted_variants(M):
        with pytest.raises(FormatError):
            F.from_buffers(bufs, attrs)
            pytest.fail(f"{fid}: {what} was accepted")


@pytest.mark.parametrize("fid", FORMATS)
def test_cost_counts(fid):
    from compactnn.cost import energy_pj

    W = np.random.default_rng(3).choice(np.array([0, 0, 0, 0.5, -1.25], np.float32), (64, 48))
    c = formats.get(fid).from_dense(W).cost()
    assert c.adds >= 0 and c.mults >= 0 and c.reads and c.writes
    assert energy_pj(c) > 0
