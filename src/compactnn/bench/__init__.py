"""Measurement harness shared by the CLI and ``benchmarks/``: repeated timing with
medians (``time_call``, from :mod:`compactnn.cost.timing`, which ``to_compact``'s
``fastest`` policy uses too), thread pinning, model latency and per-format product times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from compactnn.cost.timing import TimingStats, time_call

__all__ = ["TimingStats", "format_times", "model_latency", "threads", "time_call"]


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
