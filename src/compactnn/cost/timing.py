"""Measured cost: wall-clock timing with warm-up, repeated samples and medians.

Below ``nn`` so that ``to_compact(policy="fastest")`` can time products;
``compactnn.bench`` re-exports it with the benchmark helpers built on it.

>>> stats = time_call(lambda: sum(range(100)), repeats=5, warmup=1)
>>> stats.repeats, stats.median <= stats.max
(5, True)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TimingStats", "time_call"]


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
