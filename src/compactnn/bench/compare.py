"""Baseline-vs-compact comparison shared by the CLI, the demo and
``benchmarks/end_to_end.py``: per model its metric, file bytes, ratio, latency and
throughput (``compare``, ``format_rows``), and prediction agreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

__all__ = ["Row", "batch_of", "compare", "predictions_agree", "format_rows"]


@dataclass
class Row:
    """One model in a comparison table."""

    label: str
    metric_name: str
    metric: float
    file_bytes: int
    ratio: float
    latency_ms: dict[int, float]
    throughput: dict[int, float]


def batch_of(x: torch.Tensor, b: int) -> torch.Tensor:
    """The first ``b`` inputs of ``x``, repeating ``x`` when it has fewer."""
    if len(x) >= b:
        return x[:b]
    reps = (b + len(x) - 1) // len(x)
    return x.repeat((reps,) + (1,) * (x.dim() - 1))[:b]


def compare(models: Sequence[tuple[str, nn.Module, int]], test: TensorDataset,
            batch_sizes: Sequence[int] = (1, 256), repeats: int = 30) -> list[Row]:
    """Metric, file bytes, ratio to the first model's bytes, latency (median ms) and
    throughput (inputs/s) of each ``(label, model, file bytes)``."""
    from compactnn.bench import model_latency
    from compactnn.train import evaluate

    x = test.tensors[0]
    ref = models[0][2]
    rows = []
    for label, model, nbytes in models:
        metrics = evaluate(model, test)  # accuracy for classifiers, mse for regression
        metric_name = "accuracy" if "accuracy" in metrics else "mse"
        metric = metrics[metric_name]
        lat, thr = {}, {}
        for b in batch_sizes:
            t = model_latency(model, batch_of(x, b), repeats=repeats).median
            lat[b], thr[b] = 1e3 * t, b / t
        rows.append(Row(label, metric_name, metric, nbytes, ref / nbytes, lat, thr))
    return rows


@torch.no_grad()
def predictions_agree(a: nn.Module, b: nn.Module, x: torch.Tensor,
                      batch_size: int = 1024) -> tuple[int, int]:
    """``(number of inputs whose argmax prediction agrees, total)`` over all of ``x``."""
    same = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        same += int((a(xb).argmax(1) == b(xb).argmax(1)).sum())
    return same, len(x)


def format_rows(rows: Sequence[Row]) -> str:
    """The comparison as an aligned text table."""
    batch_sizes = list(rows[0].latency_ms) if rows else []
    head = ["model", rows[0].metric_name if rows else "metric", "file bytes", "ratio"]
    head += [f"latency b={b} (ms)" for b in batch_sizes]
    head += [f"throughput b={b} (/s)" for b in batch_sizes]
    table = [head]
    for r in rows:
        metric = f"{100 * r.metric:.2f}%" if r.metric_name == "accuracy" else f"{r.metric:.4f}"
        table.append([r.label, metric, str(r.file_bytes), f"{r.ratio:.1f}x"]
                     + [f"{r.latency_ms[b]:.3f}" for b in batch_sizes]
                     + [f"{r.throughput[b]:.0f}" for b in batch_sizes])
    return text_table(table)


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` (the first one the header) as aligned text: the first column left, the
    others right, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
