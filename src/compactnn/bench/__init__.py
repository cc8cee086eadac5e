"""Measurement harness shared by the CLI, ``to_compact(policy="fastest")`` and
``benchmarks/``: warm-up, repeated timing with medians, and thread pinning.

>>> stats = time_call(lambda: sum(range(100)), repeats=5, warmup=1)
>>> stats.repeats, stats.median <= stats.max
(5, True)
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TimingStats", "format_times", "model_latency", "threads", "time_call"]


@dataclass(frozen=True)
class TimingStats:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed calls.

    When one call is too short to time reliably, each sample is the mean over
    ``inner`` back-to-back calls.
    """

    median: float
    mean: float
    min: float
    max: float
    stdev: float
    repeats: int
    inner: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return asdict(self)


def time_call(
    fn: Callable[[], Any],
    repeats: int = 20,
    warmup: int = 3,
    *,
    min_sample_s: float = 1e-4,
    max_total_s: float | None = None,
) -> TimingStats:
    """Time ``fn()``: ``warmup`` untimed calls (JIT compilation, caches), then
    ``repeats`` samples with ``time.perf_counter``.

    Calls shorter than ``min_sample_s`` are batched: each sample times ``inner``
    consecutive calls (chosen from the last warm-up call) and divides. With
    ``max_total_s`` the sampling stops early (after at least 3 samples) once that
    much time has been spent.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    one = 0.0
    for _ in range(max(warmup, 1)):
        t0 = time.perf_counter()
        fn()
        one = time.perf_counter() - t0
    inner = 1 if one >= min_sample_s else min(1000, max(1, int(min_sample_s / max(one, 1e-9))))
    samples: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
        spent = time.perf_counter() - start
        if max_total_s is not None and len(samples) >= 3 and spent > max_total_s:
            break
    return TimingStats(
        median=statistics.median(samples),
        mean=statistics.fmean(samples),
        min=min(samples),
        max=max(samples),
        stdev=statistics.stdev(samples) if len(samples) > 1 else 0.0,
        repeats=len(samples),
        inner=inner,
    )


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` threads in torch, the native kernels, numba and numpy's
    BLAS (restored afterwards): :func:`compactnn.kernels.backend.threads`.

    ``n`` is clamped to numba's configured maximum for numba.
    """
    from compactnn.kernels import backend

    with backend.threads(n):
        yield


def model_latency(model: Any, x: Any, repeats: int = 30, warmup: int = 3,
                  max_total_s: float | None = 5.0) -> TimingStats:
    """Median wall time of ``model(x)`` under ``torch.no_grad()`` (any ``nn.Module``,
    compact or dense)."""
    import torch

    def run() -> None:
        with torch.no_grad():
            model(x)

    return time_call(run, repeats, warmup, max_total_s=max_total_s)


def format_times(weights: dict[str, Any], columns: int = 1, fids: list[str] | None = None,
                 repeats: int = 15, seed: int = 0) -> dict[str, dict[str, float]]:
    """Median seconds of ``W @ X`` (``matvec`` when ``columns == 1``) for every named
    float32 matrix in every format that can store it: ``{name: {format: seconds}}``."""
    import numpy as np

    from compactnn import formats

    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for name, W in weights.items():
        n = W.shape[1]
        X = rng.standard_normal((n, columns)).astype(np.float32)
        x = np.ascontiguousarray(X[:, 0])
        out[name] = {}
        for fid in fids or formats.available():
            try:
                M = formats.get(fid).from_dense(W)
            except (ValueError, TypeError):
                continue
            fn = (lambda M=M, x=x: M.matvec(x)) if columns == 1 else (lambda M=M, X=X: M.matmul(X))
            out[name][fid] = time_call(fn, repeats, 2, max_total_s=0.5).median
    return out
