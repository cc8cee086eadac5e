"""lossless_float's native kernels (``LFloatMatrix``, csrc/lfloat.c) on every level:
decoding bit-identical to the encoded matrix and to the numba kernels, products against
float64 references within a summation bound, the constructor's refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compactnn import formats
from compactnn.formats.lossless_float import FUSED_MAX_BATCH
from compactnn.kernels import backend
from compactnn.kernels import lossless_float as k

pytestmark = pytest.mark.skipif(backend._ext is None, reason="native extension not built")

F = formats.get("lossless_float")
EPS32 = float(np.finfo(np.float32).eps)


def finite_bits(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    """A float32 matrix: gaussian weights, any finite bit pattern (subnormals, -0.0; kind
    "bits" below 2**97 so products stay finite, "bitsall" up to the largest float), a
    bfloat16 cast of these, or one repeated value."""
    if kind == "const":
        return np.full(shape, np.float32(rng.standard_normal()), np.float32)
    if kind.startswith("bits"):
        bits = rng.integers(0, 2**32, shape, dtype=np.uint32)
        top = np.uint32(0x7F800000 if kind.startswith("bitsall") else 0x70000000)
        bits[(bits & np.uint32(0x7F800000)) >= top] ^= np.uint32(1 << 30)
        bits.flat[: min(bits.size, 3)] = [0x80000000, 0x00000001, 0x807FFFFF][: min(bits.size, 3)]
        W = bits.view(np.float32)
    else:
        W = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    if kind.endswith("bf16"):
        W = torch.from_numpy(W).bfloat16().float().numpy()
        W[~np.isfinite(W)] = 0
    return np.ascontiguousarray(W)


def numba_dense(M) -> np.ndarray:
    out = np.empty(M.shape, np.float32)
    if out.size:
        k.rows_to_bits(*M._args, 0, out.view(np.uint32))
    return out


def bound(W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Worst-case float32 summation error of X @ Wᵀ (as the conformance suite's)."""
    n = W.shape[1]
    A = np.abs(W.astype(np.float64))
    return 4 * (n + 2) * EPS32 * (np.abs(X.astype(np.float64)) @ A.T) + 1e-30


KINDS = ["gauss", "gauss_bf16", "bits", "bits_bf16", "const"]


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 45), n=st.integers(0, 300), kind=st.sampled_from(KINDS),
       b=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_decode_and_products_every_level(m, n, kind, b, seed):
    rng = np.random.default_rng(seed)
    W = finite_bits(rng, (m, n), kind)
    M = F.from_dense(W)
    assert M.to_dense().tobytes() == W.tobytes()
    with backend.use("numba"):
        assert numba_dense(M).tobytes() == W.tobytes()
    X = rng.standard_normal((b, n)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    tol = bound(W, X)
    for name in [*backend.levels(), "numba"]:
        with backend.use(name):
            assert M.to_dense().tobytes() == W.tobytes(), name
            if name != "numba":
                kern = M._native()
                Y = np.empty((b, m), np.float32)
                kern.rows(X, Y, b, None)
                assert np.all(np.abs(Y - ref) <= tol), name
                kern.rows(X, Y, b, bias)
                assert np.all(np.abs(Y - (ref + bias)) <= tol + 4 * EPS32 * np.abs(ref + bias))
            assert np.all(np.abs(M.rmatmul(X) - ref) <= tol), name
            assert np.all(np.abs(M.matmul(np.ascontiguousarray(X.T)) - ref.T) <= tol.T), name
            if n:
                assert np.all(np.abs(M.matvec(X[0]) - ref[0]) <= tol[0]), name


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 90), kind=st.sampled_from(["bitsall", *KINDS]),
       data=st.data())
def test_decode_rows_any_range(m, n, kind, data):
    """Ranges that start and end inside 8-row blocks write exactly their rows."""
    W = finite_bits(np.random.default_rng(m * n), (m, n), kind)
    r0 = data.draw(st.integers(0, m))
    nr = data.draw(st.integers(0, m - r0))
    kern = F.from_dense(W)._native()
    for name in backend.levels():
        with backend.use(name):
            out = np.full((nr + 1, n), np.float32(7.0))
            kern.decode_rows(r0, nr, out)
            assert out[:nr].tobytes() == W[r0:r0 + nr].tobytes(), name
            assert np.all(out[nr] == 7.0), name  # nothing past the range


def test_long_codes_take_the_canonical_search():
    """Exponents spread over 2**-120 .. 2**0 with geometric counts give codes longer
    than the 12-bit table; 1000 x 37 rows make 125 blocks (15 groups of 8 and 5 left)."""
    rng = np.random.default_rng(5)
    e = np.minimum(rng.geometric(0.35, (1000, 37)), 120)
    W = (rng.uniform(1, 2, e.shape) * 2.0 ** -e.astype(np.float64)).astype(np.float32)
    W[rng.random(W.shape) < 0.5] *= -1
    M = F.from_dense(W)
    assert M.length_counts.shape[0] > 12
    X = rng.standard_normal((FUSED_MAX_BATCH + 3, 37)).astype(np.float32)
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    for name in backend.levels():
        with backend.use(name):
            assert M.to_dense().tobytes() == W.tobytes(), name
            assert np.all(np.abs(M.rmatmul(X) - ref) <= bound(W, X)), name
            assert np.all(np.abs(M.rmatmul(X[:3]) - ref[:3]) <= bound(W, X[:3])), name


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_split_blocks(threads):
    W = finite_bits(np.random.default_rng(6), (203, 129), "gauss")
    M = F.from_dense(W)
    X = np.random.default_rng(7).standard_normal((5, 129)).astype(np.float32)
    with backend.threads(threads):
        assert M.to_dense().tobytes() == W.tobytes()
        Y = M.rmatmul(X)
    assert np.all(np.abs(Y - X.astype(np.float64) @ W.T) <= bound(W, X))


def test_infinities_and_nan_are_refused_at_encoding():
    for v in (np.inf, -np.inf, np.nan):
        W = np.ones((3, 4), np.float32)
        W[1, 2] = v
        with pytest.raises(ValueError):
            F.from_dense(W)


def kernel_args(M) -> dict:
    m, n = M.shape
    return dict(words=M.words, block_bits=M._block_bits, tails=M.tails,
                length_counts=M.length_counts.astype(np.int64), omega=M.omega, m=m, n=n,
                head_bits=M.head_bits, zero_bits=M.zero_bits)


@pytest.mark.parametrize("change, match", [
    ({"words": "short"}, "words: expected at least"),
    ({"tails": "short"}, "tails: expected at least"),
    ({"block_bits": "short"}, "block_bits: expected at least"),
    ({"block_bits": "decreasing"}, "block_bits must"),
    ({"block_bits": "huge"}, "shorter than 2\\^40 bits"),
    ({"length_counts": "overfull"}, "not a valid code"),
    ({"omega": "sign"}, "sign or tail bits"),
    ({"head_bits": 20, "zero_bits": 20}, "head_bits"),
    ({"words": "float"}, "words: expected a contiguous array of 'I'"),
])
def test_constructor_refuses_inconsistent_arrays(change, match):
    M = F.from_dense(finite_bits(np.random.default_rng(8), (20, 30), "gauss"))
    a = kernel_args(M)
    for key, how in change.items():
        v = a[key]
        if how == "short":
            a[key] = v[: -2 if key != "block_bits" else -1]
        elif how == "decreasing":
            a[key] = v[::-1].copy()
        elif how == "huge":
            a[key] = np.r_[v[:-1], np.int64(2**40)]
        elif how == "overfull":
            a[key] = v + 1
        elif how == "sign":
            a[key] = -v
        elif how == "float":
            a[key] = v.astype(np.float32)
        else:
            a[key] = how
    with pytest.raises((ValueError, TypeError), match=match):
        backend._ext.LFloatMatrix(**a)


def test_vbmi_tails_where_the_cpu_has_them():
    """The AVX-512 level unpacks tails with VBMI exactly when the CPU has it."""
    M = F.from_dense(finite_bits(np.random.default_rng(9), (8, 8), "gauss"))
    assert M._native().vbmi == bool(backend._ext.cpu_level() == 2 and _has_vbmi())


def _has_vbmi() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512vbmi " in f.read()
    except OSError:
        return False


@pytest.mark.parametrize("kind, shape", [("gauss", (37, 300)), ("bits", (20, 41)),
                                         ("gauss_bf16", (9, 1000)), ("const", (5, 5))])
def test_cost_counts_the_native_decoders_steps(kind, shape):
    """cost()'s walk on the code lengths finds the C decoder's own step counts."""
    M = F.from_dense(finite_bits(np.random.default_rng(10), shape, kind))
    assert M._native_steps() == M._native().counts()
    steps, nlong, _ = M._native_steps()
    e = shape[0] * shape[1]
    assert (steps == 0) == (M.length_counts.shape[0] == 0)
    assert steps <= e and 2 * steps >= e - 8 * -(-shape[0] // 8) or steps == 0
    one, big = M.cost(1, "avx512"), M.cost(FUSED_MAX_BATCH + 1, "avx2")
    assert one.reads["table"][0] == steps and ("limit" in one.reads) == (nlong > 0)
    assert "values" in one.reads and "tile" in big.reads and big.mults == e * (FUSED_MAX_BATCH + 1)
    assert "lut" in M.cost(1, "numba").reads  # the numba kernels' own counts


def test_long_code_counts():
    rng = np.random.default_rng(5)
    e = np.minimum(rng.geometric(0.4, (200, 200)), 126)
    M = F.from_dense((2.0 ** -e.astype(np.float64)).astype(np.float32))
    assert M.length_counts.shape[0] > 12
    counts = M._native().counts()
    assert counts[1] > 0 and counts[2] >= counts[1]
    assert M._native_steps() == counts


@pytest.mark.parametrize("kind, h", [("gauss", 0), ("gauss", 1), ("gauss", 2), ("gauss", 3),
                                     ("gauss_bf16", 0), ("gauss_bf16", 3), ("pow2", 0)])
def test_every_head_and_tail_width(kind, h):
    """Forced head_bits 0..3 (tails of 24 - h and 8 - h bits) and powers of two (every
    mantissa bit zero: z = 23, a 1-bit tail holding the sign), 29 x 77 (4 blocks, the
    last one of 5 rows)."""
    rng = np.random.default_rng(11)
    if kind == "pow2":
        W = (2.0 ** rng.integers(-30, 5, (29, 77))).astype(np.float32)
        W[rng.random(W.shape) < 0.5] *= -1
    else:
        W = finite_bits(rng, (29, 77), kind)
    M = F.from_dense(W, head_bits=h)
    assert M.head_bits == h and M.tail_bits == 24 - h - M.zero_bits
    if kind == "pow2":
        assert M.zero_bits == 23 and M.tail_bits == 1
    X = rng.standard_normal((3, 77)).astype(np.float32)
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    for name in [*backend.levels(), "numba"]:
        with backend.use(name):
            assert M.to_dense().tobytes() == W.tobytes(), name
            assert np.all(np.abs(M.rmatmul(X) - ref) <= bound(W, X)), name
            assert F.from_buffers(*M.to_buffers()).to_dense().tobytes() == W.tobytes(), name


def test_forced_head_bits_out_of_range_is_refused():
    W = finite_bits(np.random.default_rng(12), (4, 4), "gauss_bf16")
    with pytest.raises(ValueError, match="head_bits must be an integer in 0..3"):
        F.from_dense(W, head_bits=4)
    P = np.full((2, 2), 0.5, np.float32)  # z = 23: only h = 0
    with pytest.raises(ValueError, match="in 0..0"):
        F.from_dense(P, head_bits=1)
