"""Weight sharing: CWS, PWS, UQ and ECSQ, applied through ``SharedWeights``
(``compactnn.transforms.shared``).

Each quantizer is a 1-D function on the values to share (float64, the non-zero weights
of a layer or of all layers of a kind) returning a ``Quantized``: a sorted float32
codebook and, per value, its index into it (``-1``: the value becomes exactly 0). It
never produces more than ``k`` codebook entries. Zero weights (pruned) are not given to
the quantizer and stay zero, so ``k`` bounds the number of distinct *non-zero* values.

- ``kmeans_1d`` (CWS, "exact"): Lloyd's algorithm run to its exact fixed point on the
  sorted data. In 1-D every cluster is an interval, so one iteration is a
  ``searchsorted`` of the k-1 decision boundaries plus prefix sums, O(k log n); it
  stops when no boundary moves (at most ``max_iter`` = 1000 iterations): every value
  then sits in its nearest centroid's cluster and every centroid is its cluster's
  mean. "Exact" means exactly that fixed point of Lloyd's iteration, a local optimum of
  the k-means cost (not the global one, which needs an O(k n^2) dynamic program). A
  cluster that becomes empty is re-seeded by splitting the cluster with the largest
  squared error at its mean, so k clusters are found whenever there are k distinct
  values (pruned layers leave a gap around 0 where evenly spaced centroids start
  empty). Init: ``"linear"`` (k points evenly spaced over [min, max], Han et al.'s best
  for CWS) or ``"quantile"``. ``kmeans_sklearn`` runs scikit-learn's ``KMeans`` instead.
- ``pws_1d``: representatives at the empirical quantiles i/(k-1); a value in
  [v, V] becomes V with probability (w - v)/(V - v), else v, so E[ŵ] = w (seeded).
- ``uq_1d``: ŵ = Δ·rint(w/Δ) with Δ the smallest step on a geometric grid (32 steps
  per octave) giving at most k non-zero levels; values that round to 0 become zeros.
- ``ecsq_1d``: entropy-constrained scalar quantization (Chou, Lookabaugh, Gray 1989):
  starting from the k-means solution with ``oversample·k`` clusters, alternately assign
  each value to ``argmin_l (w - c_l)²/σ² - λ·log2 p_l`` and update centroids and
  probabilities, dropping empty clusters. λ (in units of the data variance σ² per bit)
  is found by bisection as the smallest value leaving at most k clusters; if that
  leaves fewer than k/2 (the count can jump on small layers), it retries from fewer
  initial clusters. Each cluster's cost is a parabola in w, so the decision regions
  are intervals given by the lower envelope of k lines; the same sorted-data
  iteration as ``kmeans_1d`` (λ = 0) applies.

``transforms.sharing.share_layers_`` applies a quantizer to layers; afterwards ``layer.weight`` is
``codebook[assign]`` (0 where ``assign == -1``). The codebook is an ``nn.Parameter``
(shared by the layers of a group), the assignments a buffer, so fine-tuning learns the
shared values, autograd sums the gradients of the weights sharing a value, and the
assignments and zeros never change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compactnn._validate import integer
from compactnn.coding.codebook import distinct
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.shared import SharedWeights

__all__ = ["Quantized", "SharedWeights", "kmeans_1d", "kmeans_sklearn", "pws_1d", "uq_1d",
           "ecsq_1d", "ecsq_fixed_lambda"]


@dataclass(frozen=True)
class Quantized:
    """Result of a 1-D quantizer: ``codebook`` (float32, ascending, distinct, at most k
    entries) and ``assign`` (int64 index into it per input value, -1 for zero)."""

    codebook: np.ndarray
    assign: np.ndarray

    def values(self) -> np.ndarray:
        """The quantized values (float32), 0 where ``assign == -1``."""
        return np.concatenate([[np.float32(0)], self.codebook])[self.assign + 1]


def _check_k(k: int) -> None:
    integer("k", k, 1, error=RecipeError)


def _as_values(x) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise RecipeError("weights to quantize must be finite (found NaN or Inf)")
    return x


def _group(x: np.ndarray, assign: np.ndarray, centers: np.ndarray | None = None) -> Quantized:
    """Codebook from an assignment: ``centers`` of the used groups (default: group means),
    unused groups dropped, renumbered in ascending codebook order; -1 stays -1."""
    used = assign >= 0
    n_groups = int(assign.max()) + 1 if used.any() else 0
    counts = np.bincount(assign[used], minlength=n_groups)
    if centers is None:
        sums = np.bincount(assign[used], weights=x[used], minlength=n_groups)
        centers = sums / np.maximum(counts, 1)
    keep = np.flatnonzero(counts > 0)
    book = np.asarray(centers, np.float64)[keep].astype(np.float32) + np.float32(0)  # no -0.0
    order = np.argsort(book, kind="stable")
    book = book[order]
    # Distinct groups may round to one float32 value: merge them.
    uniq, first = np.unique(book, return_inverse=True)
    remap = np.full(n_groups, -1, np.int64)
    remap[keep[order]] = first
    out = np.full(assign.shape, -1, np.int64)
    out[used] = remap[assign[used]]
    return Quantized(uniq.astype(np.float32), out)


def _envelope(c: np.ndarray, a: np.ndarray) -> tuple[list[int], list[float]]:
    """Lower envelope of the lines ``-2 c_l w + a_l`` (``c`` ascending, distinct): the
    indices of the lines on it, left to right, and the ``w`` where each hands over."""
    hull: list[int] = []
    cuts: list[float] = []
    for j in range(len(c)):
        while hull:
            i = hull[-1]
            w = (a[j] - a[i]) / (2.0 * (c[j] - c[i]))
            if cuts and w <= cuts[-1]:
                hull.pop()
                cuts.pop()
            else:
                break
        if hull:
            cuts.append((a[j] - a[hull[-1]]) / (2.0 * (c[j] - c[hull[-1]])))
        hull.append(j)
    return hull, cuts


class _Sorted:
    """Sorted values with prefix sums of values and squares: the sum, count and squared
    error of any interval of the sorted data in O(1)."""

    def __init__(self, x: np.ndarray) -> None:
        self.xs = np.sort(x)
        self.n = self.xs.size
        self.cum = np.concatenate([[0.0], np.cumsum(self.xs)])
        self.cum2 = np.concatenate([[0.0], np.cumsum(self.xs * self.xs)])

    def means(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (self.cum[hi] - self.cum[lo]) / (hi - lo)

    def split_to(self, lo: np.ndarray, hi: np.ndarray, target: int) -> np.ndarray:
        """Split the intervals ``[lo, hi)`` (non-empty, sorted) at their means, largest
        squared error first, until there are ``target`` of them or none can be split;
        return the interval means."""
        lo, hi = list(lo), list(hi)
        while len(lo) < target:
            a, b = np.asarray(lo), np.asarray(hi)
            sums = self.cum[b] - self.cum[a]
            sse = self.cum2[b] - self.cum2[a] - sums * sums / (b - a)
            sse[self.xs[b - 1] <= self.xs[a]] = -1.0  # one distinct value: cannot split
            j = int(np.argmax(sse))
            if sse[j] < 0:
                break
            m = a[j] + int(np.searchsorted(self.xs[a[j]:b[j]], sums[j] / (b[j] - a[j])))
            m = min(max(m, a[j] + 1), b[j] - 1)  # both halves non-empty despite rounding
            lo.insert(j + 1, m)
            hi.insert(j, m)
        return self.means(np.asarray(lo), np.asarray(hi))

    def lloyd(self, c: np.ndarray, lam: float, max_iter: int,
              p: np.ndarray | None = None, target: int = 0) -> np.ndarray:
        """Entropy-constrained Lloyd iterations from centroids ``c`` (ascending, distinct)
        and probabilities ``p`` (default uniform); ``lam`` is in squared distance per bit.
        With ``lam == 0`` this is k-means: while there are fewer than ``target`` clusters
        (empty ones, or fewer initial centroids), the cluster with the largest squared
        error is split at its mean; with ``lam > 0`` empty clusters are dropped. Returns
        the decision boundaries of the final partition."""
        p = np.full(c.size, 1.0 / c.size) if p is None else p
        edges = None
        for _ in range(max_iter):
            if lam > 0:
                hull, cuts = _envelope(c, c * c - lam * np.log2(p))
                c, bounds = c[hull], np.asarray(cuts)
            else:
                bounds = (c[1:] + c[:-1]) / 2
            new_edges = np.concatenate([[0], np.searchsorted(self.xs, bounds, "left"), [self.n]])
            if edges is not None and np.array_equal(new_edges, edges):
                break
            counts = np.diff(new_edges)
            nonempty = counts > 0
            lo, hi = new_edges[:-1][nonempty], new_edges[1:][nonempty]
            edges = new_edges if nonempty.all() else None
            if lam == 0 and lo.size < target:
                c = self.split_to(lo, hi, target)
            else:
                c, p = self.means(lo, hi), counts[nonempty] / self.n
        return bounds


def _assign_by_bounds(x: np.ndarray, bounds: np.ndarray) -> Quantized:
    return _group(x, np.searchsorted(bounds, x, "right").astype(np.int64, copy=False))


def kmeans_1d(x, k: int, init: str = "linear", max_iter: int = 1000) -> Quantized:
    """CWS with exact 1-D Lloyd iterations on sorted data (see the module docstring).

    >>> q = kmeans_1d([0.1, 0.2, 0.9, 1.0, 1.1], 2)
    >>> q.codebook.tolist(), q.assign.tolist()
    ([0.15000000596046448, 1.0], [0, 0, 1, 1, 1])
    """
    _check_k(k)
    if max_iter < 1:
        raise RecipeError(f"max_iter must be >= 1, got {max_iter!r}")
    x = _as_values(x)
    if x.size == 0:
        return Quantized(np.empty(0, np.float32), np.empty(0, np.int64))
    data = _Sorted(x)
    if init == "linear":
        c = np.unique(np.linspace(data.xs[0], data.xs[-1], k))
    elif init == "quantile":
        c = np.unique(np.quantile(data.xs, (np.arange(k) + 0.5) / k))
    else:
        raise RecipeError(f"init must be 'linear' or 'quantile', got {init!r}")
    distinct = 1 + int(np.count_nonzero(np.diff(data.xs)))
    bounds = data.lloyd(c, 0.0, max_iter, target=min(k, distinct))
    del data  # the sorted copy and its prefix sums go before the assignment is built
    return _assign_by_bounds(x, bounds)


def kmeans_sklearn(x, k: int, init: str = "linear", seed: int = 0) -> Quantized:
    """CWS with scikit-learn's ``KMeans`` (Lloyd, one run; ``init="linear"`` seeds it with
    evenly spaced centroids, ``"k-means++"`` with sklearn's seeded k-means++)."""
    from sklearn.cluster import KMeans

    _check_k(k)
    x = _as_values(x)
    if x.size == 0:
        return Quantized(np.empty(0, np.float32), np.empty(0, np.int64))
    k = min(k, distinct(x))
    if init == "linear":
        start = np.linspace(x.min(), x.max(), k)[:, None]
    elif init == "k-means++":
        start = "k-means++"
    else:
        raise RecipeError(f"init must be 'linear' or 'k-means++', got {init!r}")
    km = KMeans(k, init=start, n_init=1, random_state=seed).fit(x[:, None])
    return _group(x, km.labels_.astype(np.int64), km.cluster_centers_[:, 0])


def pws_1d(x, k: int, seed: int = 0) -> Quantized:
    """PWS: quantile representatives and unbiased stochastic rounding between them
    (k = 1: the single representative is the mean).

    >>> q = pws_1d(np.linspace(0, 1, 101), 3, seed=0)
    >>> q.codebook.tolist()
    [0.0, 0.5, 1.0]
    """
    _check_k(k)
    x = _as_values(x)
    if x.size == 0:
        return Quantized(np.empty(0, np.float32), np.empty(0, np.int64))
    if k == 1:
        reps = np.array([x.mean()])
    else:
        reps = np.quantile(x, np.linspace(0.0, 1.0, k))
    reps = np.unique(reps.astype(np.float32)).astype(np.float64)
    if reps.size == 1:
        return _group(x, np.zeros(x.size, np.int64), reps)
    j = np.clip(np.searchsorted(reps, x, "right") - 1, 0, reps.size - 2)
    lo, hi = reps[j], reps[j + 1]
    up = np.random.default_rng(seed).random(x.size) < (x - lo) / (hi - lo)
    return _group(x, j + up, reps)


def uq_1d(x, k: int, steps_per_octave: int = 32) -> Quantized:
    """UQ: ŵ = Δ·rint(w/Δ), Δ the smallest grid step giving at most k non-zero levels
    (grid: 2·max|w|·2^(-j/steps_per_octave)); values rounding to 0 get ``assign = -1``.

    >>> q = uq_1d([-1.0, -0.4, 0.1, 0.5, 1.0], 2)
    >>> [round(v, 3) for v in q.codebook.tolist()], q.assign.tolist()
    ([-0.677, 0.677], [0, 0, -1, 1, 1])
    """
    _check_k(k)
    x = _as_values(x)
    if x.size == 0:
        return Quantized(np.empty(0, np.float32), np.empty(0, np.int64))
    xs = np.sort(x)
    top = max(-xs[0], xs[-1])
    if top == 0:
        return Quantized(np.empty(0, np.float32), np.full(x.size, -1, np.int64))
    floor = max(xs[-1] - xs[0], top) / (4 * k)
    n_steps = min(4000, int(np.ceil(np.log2(2 * top / floor) * steps_per_octave)) + 1)
    best = 2 * top
    for j in range(n_steps):
        delta = 2 * top * 2.0 ** (-j / steps_per_octave)
        r = np.rint(xs / delta)
        levels = 1 + np.count_nonzero(np.diff(r)) - bool(np.any(r == 0))
        if levels <= k:
            best = delta
    levels = np.rint(x / best)
    nonzero = levels != 0
    used = np.unique(levels[nonzero])
    ids = np.full(x.size, -1, np.int64)
    ids[nonzero] = np.searchsorted(used, levels[nonzero])
    return _group(x, ids, best * used)


def _ecsq(x: np.ndarray, data: _Sorted, init: Quantized, lam: float,
          max_iter: int) -> Quantized:
    counts = np.bincount(init.assign, minlength=init.codebook.size)
    scale = max(data.xs.var(), np.finfo(np.float64).tiny)
    bounds = data.lloyd(init.codebook.astype(np.float64), lam * scale, max_iter,
                        counts / counts.sum())
    return _assign_by_bounds(x, bounds)


def ecsq_fixed_lambda(x, lam: float, n_clusters: int, max_iter: int = 200) -> Quantized:
    """ECSQ with a fixed λ (units: data variance per bit), started from the k-means
    solution with ``n_clusters`` clusters (λ = 0 returns that solution)."""
    _check_k(n_clusters)
    if not lam >= 0:
        raise RecipeError(f"lambda must be >= 0, got {lam!r}")
    x = _as_values(x)
    init = kmeans_1d(x, n_clusters, max_iter=max_iter)
    if x.size == 0 or lam == 0:
        return init
    return _ecsq(x, _Sorted(x), init, lam, max_iter)


def _ecsq_bisect(x: np.ndarray, data: _Sorted, init: Quantized, k: int, max_iter: int,
                 bisect_steps: int) -> Quantized:
    """The smallest λ (by bisection) whose solution from ``init`` has at most k clusters."""
    if init.codebook.size <= k:
        return init
    lo, hi = 0.0, 1.0
    while (q := _ecsq(x, data, init, hi, max_iter)).codebook.size > k:
        lo, hi = hi, hi * 4
    best = q
    for _ in range(bisect_steps):
        mid = np.sqrt(lo * hi) if lo > 0 else hi / 16
        q = _ecsq(x, data, init, mid, max_iter)
        if q.codebook.size <= k:
            hi, best = mid, q
        else:
            lo = mid
    return best


def ecsq_1d(x, k: int, oversample: int = 2, max_iter: int = 200,
            bisect_steps: int = 24) -> Quantized:
    """ECSQ with λ tuned by bisection: the smallest λ whose solution, started from the
    k-means solution with ``n0 = oversample·k`` clusters, keeps at most ``k`` of them.

    On small layers the cluster count can jump from above k to far below it as λ grows;
    when fewer than ``ceil(k/2)`` clusters survive, the search is repeated from fewer
    initial clusters (``n0 = k + (n0 - k) // 2`` ..., down to ``n0 = k``, which is plain
    k-means), so the result has about k clusters.
    """
    _check_k(k)
    integer("oversample", oversample, 1, error=RecipeError)
    x = _as_values(x)
    data = _Sorted(x)
    distinct = 1 + int(np.count_nonzero(np.diff(data.xs))) if x.size else 0
    n0 = oversample * k
    while True:
        q = _ecsq_bisect(x, data, kmeans_1d(x, n0, max_iter=max_iter), k, max_iter,
                         bisect_steps)
        if n0 == k or 2 * q.codebook.size >= min(k, distinct):
            return q
        n0 = k + (n0 - k) // 2
