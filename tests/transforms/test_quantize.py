"""The four 1-D quantizers: at most k values, valid codebooks, method-specific properties."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from compactnn.coding import entropy_bits
from compactnn.transforms import (
    ecsq_1d,
    ecsq_fixed_lambda,
    kmeans_1d,
    kmeans_sklearn,
    pws_1d,
    uq_1d,
)

QUANTIZERS = {
    "cws-exact-linear": kmeans_1d,
    "cws-exact-quantile": functools.partial(kmeans_1d, init="quantile"),
    "cws-sklearn": kmeans_sklearn,
    "pws": pws_1d,
    "uq": uq_1d,
    "ecsq": ecsq_1d,
}


def laplace(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).laplace(0, 0.05, n)


def check_quantized(q, x: np.ndarray, k: int) -> None:
    book, assign = q.codebook, q.assign
    assert book.dtype == np.float32 and assign.dtype == np.int64 and assign.shape == x.shape
    assert book.size <= k
    assert (np.diff(book) > 0).all()  # ascending and distinct
    assert not np.signbit(book[book == 0]).any()  # no -0.0
    assert ((assign >= -1) & (assign < book.size)).all()
    assert np.isin(np.arange(book.size), assign).all()  # every codebook entry is used
    values = q.values()
    assert np.unique(values[values != 0]).size <= k


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(1, 300),
              elements=st.sampled_from([-2.0, -1.0, -0.5, -1e-3, 0.25, 0.5, 3.0])
              | st.floats(-10, 10, allow_nan=False, allow_subnormal=False)),
       st.integers(1, 20), st.sampled_from(sorted(QUANTIZERS)))
def test_at_most_k_values(x, k, name):
    check_quantized(QUANTIZERS[name](x, k), x, k)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
@pytest.mark.parametrize("k", [1, 2, 4, 16, 64])
def test_real_sized_inputs(name, k):
    x = laplace(5000)
    q = QUANTIZERS[name](x, k)
    check_quantized(q, x, k)
    if name != "uq":  # UQ may need fewer levels than k for the smallest grid step
        assert q.codebook.size >= min(k, 2) or name == "ecsq"


@pytest.mark.parametrize("name", ["cws-exact-linear", "cws-exact-quantile", "cws-sklearn"])
def test_kmeans_is_exact_when_k_covers_the_values(name):
    x = np.repeat([-0.3, -0.1, 0.2, 0.7], [5, 1, 3, 2]).astype(np.float64)
    q = QUANTIZERS[name](x, 4)
    np.testing.assert_array_equal(q.values(), x.astype(np.float32))


def test_exact_kmeans_is_a_lloyd_fixed_point_as_good_as_sklearn():
    x = laplace(20000, seed=1)
    for k in (4, 16, 32):
        q = kmeans_1d(x, k)
        assert q.codebook.size == k
        book = q.codebook.astype(np.float64)
        dist = np.abs(x[:, None] - book[None, :])
        assert (dist[np.arange(x.size), q.assign] <= dist.min(1) + 1e-6).all()  # nearest
        means = np.bincount(q.assign, x, k) / np.bincount(q.assign, minlength=k)
        np.testing.assert_allclose(book, means, rtol=1e-6, atol=1e-9)  # centroid = mean
        cost = np.sum((q.values() - x) ** 2)
        ref = kmeans_sklearn(x, k)
        assert cost <= 1.02 * np.sum((ref.values() - x) ** 2)


def test_kmeans_reseeds_empty_clusters_on_pruned_data():
    x = laplace(10000)
    x = x[np.abs(x) > np.quantile(np.abs(x), 0.9)]  # a gap around 0, as after pruning
    assert kmeans_1d(x, 16).codebook.size == 16


def test_pws_is_unbiased_in_expectation():
    # float32-exact values, as weights are (the representatives are float32)
    base = np.array([-0.875, -0.3125, -0.046875, 0.0, 0.125, 0.40625, 0.765625, 1.0])
    reps = 20000
    x = np.tile(base, reps)
    q = pws_1d(x, 4, seed=123)
    book = q.codebook.astype(np.float64)
    np.testing.assert_allclose(book, np.quantile(x, [0, 1 / 3, 2 / 3, 1]).astype(np.float32))
    got = q.values().astype(np.float64).reshape(reps, base.size)
    # each value rounds to its two neighbouring representatives, never further
    j = np.clip(np.searchsorted(book, base, "right") - 1, 0, book.size - 2)
    assert np.isin(got, book).all()
    assert ((got >= book[j]) & (got <= book[j + 1])).all()
    var = (book[j + 1] - base) * (base - book[j])
    z = (got.mean(0) - base) / np.sqrt(np.maximum(var, 1e-30) / reps)
    assert (np.abs(z) < 4.5).all(), z
    # reproducible with the seed, different with another seed
    np.testing.assert_array_equal(pws_1d(x, 4, seed=123).assign, q.assign)
    assert not np.array_equal(pws_1d(x, 4, seed=124).assign, q.assign)


def test_uq_step_is_the_smallest_on_the_grid():
    x = laplace(3000)
    for k in (2, 4, 16):
        q = uq_1d(x, k)
        levels_of = lambda d: np.unique(np.rint(x / d)[np.rint(x / d) != 0]).size  # noqa: E731
        book = q.codebook.astype(np.float64)
        top = np.abs(x).max()
        grid = 2 * top * 2.0 ** (-np.arange(4000) / 32)
        ok = [d for d in grid if d > top / (4 * k) * 0.9 and levels_of(d) <= k]
        delta = min(ok)
        np.testing.assert_allclose(book, (delta * np.unique(np.rint(x / delta)[
            np.rint(x / delta) != 0])).astype(np.float32))
        assert (q.assign[np.rint(x / delta) == 0] == -1).all()


def test_ecsq_entropy_falls_as_lambda_grows():
    x = laplace(20000, seed=2)
    ents, dists = [], []
    for lam in (0.0, 0.002, 0.01, 0.03, 0.1, 0.3):
        v = ecsq_fixed_lambda(x, lam, 32).values()
        ents.append(entropy_bits(v) / v.size)
        dists.append(np.mean((v - x) ** 2))
    assert all(b <= a + 1e-9 for a, b in zip(ents, ents[1:], strict=False)), ents
    assert ents[-1] < ents[0] - 1.0 and dists[-1] > dists[0]


def test_ecsq_reaches_k_with_less_entropy_than_kmeans():
    x = laplace(20000, seed=3)
    for k in (8, 16, 32):
        e = ecsq_1d(x, k)
        assert k // 2 <= e.codebook.size <= k
        ve, vk = e.values(), kmeans_1d(x, k).values()
        assert entropy_bits(ve) < entropy_bits(vk)


def test_ecsq_keeps_about_k_clusters_on_tiny_layers():
    # 16 values: at the λ where 9 clusters drop to <= 8, all of them merge into one;
    # ecsq_1d then restarts from fewer initial clusters.
    x = np.array([-0.182, -0.162, -0.143, -0.143, -0.143, -0.143, -0.143, -0.143, -0.143,
                  -0.143, -0.143, 0.14, 0.143, 0.151, 0.173, 0.184])
    for k in (2, 4, 8):
        assert k // 2 <= ecsq_1d(x, k).codebook.size <= k


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_bad_input(name):
    with pytest.raises(ValueError, match="k must be"):
        QUANTIZERS[name](np.ones(3), 0)
    with pytest.raises(ValueError, match="k must be"):
        QUANTIZERS[name](np.ones(3), 2.5)
    with pytest.raises(ValueError, match="finite"):
        QUANTIZERS[name](np.array([1.0, np.nan]), 2)
    assert QUANTIZERS[name](np.empty(0), 3).codebook.size == 0
