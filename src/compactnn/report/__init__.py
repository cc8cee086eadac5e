"""HTML reports: tables and matplotlib plots of where a compact model's bytes go,
how its accuracy relates to its size, and how fast each format multiplies.

``collect`` measures everything for one compact file; ``render_html`` turns the
result into one self-contained page (plots embedded as PNG); ``write_report`` writes
it atomically.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ReportData", "Point", "collect", "render_html", "write_report", "format_sizes"]


@dataclass(frozen=True)
class Point:
    """One model on the accuracy-vs-size plot."""

    label: str
    bytes: int
    metric: float


@dataclass
class ReportData:
    """Everything a report shows; ``summary`` rows are ``{column: value}`` dicts."""

    title: str
    metric: str
    summary: list[dict[str, Any]]
    layers_table: list[dict[str, Any]]
    sizes: dict[str, dict[str, int]]
    times: dict[str, dict[str, float]]
    points: list[Point]
    notes: list[str] = field(default_factory=list)


def format_sizes(weights: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Bytes of every named matrix in every format that can store it, plus the
    ``archive`` stream and the ``entropy`` bound: ``{name: {format: bytes}}``."""
    from compactnn import formats
    from compactnn.coding import archive, entropy_bits

    out: dict[str, dict[str, int]] = {}
    for name, W in weights.items():
        row: dict[str, int] = {}
        for fid in formats.available():
            try:
                row[fid] = formats.get(fid).from_dense(W).nbytes
            except (ValueError, TypeError):
                continue
        a = archive.encode(W)
        if a is not None:
            row["archive"] = a.nbytes
        row["entropy bound"] = int(np.ceil(entropy_bits(W) / 8))
        out[name] = row
    return out


def collect(path: str | os.PathLike, test: Any = None, *, baseline: Any = None,
            baseline_bytes: int | None = None, batch_sizes: Sequence[int] = (1, 256),
            title: str | None = None, repeats: int = 15) -> ReportData:
    """Load a compact file and measure it: per-layer table, bytes per format, product
    time per format (batch 1), and, with ``test`` data, the metric of the compact model,
    of its dense twin and of an optional dense ``baseline`` model (whose float32 file
    size is ``baseline_bytes``), plus model latency at ``batch_sizes`` (``repeats``
    timed runs per measurement)."""
    import torch

    from compactnn.bench import format_times, model_latency
    from compactnn.bench.compare import batch_of
    from compactnn.io import inspect, load
    from compactnn.nn import CompactConv2d, CompactLinear, to_dense
    from compactnn.train import evaluate

    info = inspect(path)
    meta = info.metadata
    spec = info.model.get("zoo")
    model = load(path) if spec is not None else None
    if model is None:
        raise ValueError(f"{os.fspath(path)}: reports need a zoo model file")
    dense = to_dense(model)
    weights, groups_note = {}, False
    for name, m in model.named_modules():
        if isinstance(m, (CompactLinear, CompactConv2d)):
            weights[name] = m.matrices[0].to_dense()
            groups_note |= len(m.matrices) > 1
    notes = []
    if groups_note:
        notes.append("Grouped convolutions: sizes and times are those of the first group.")
    layers_table = [{
        "layer": li.name, "kind": li.kind, "format": li.format,
        "stored as": ("archive, decoded at load" if li.storage == "archive"
                      else "raw (runs as stored)"),
        "shape": f"{li.shape[0]}x{li.shape[1]}" + (f" x{li.groups}" if li.groups > 1 else ""),
        "bytes": li.stored_bytes, "bits/weight": round(li.bits_per_weight, 3),
        "entropy bits/weight": (None if li.entropy_bits_per_weight is None
                                else round(li.entropy_bits_per_weight, 3)),
        "share of file": f"{100 * li.share:.1f}%",
    } for li in info.layers]
    layers_table.append({"layer": "plain tensors + header", "bytes": info.state_bytes +
                         info.header_bytes})
    layers_table.append({"layer": "file", "bytes": info.file_bytes})
    sizes = format_sizes(weights)
    times = format_times(weights, columns=1, repeats=repeats)
    metric = "accuracy"
    summary: list[dict[str, Any]] = []
    points: list[Point] = []
    if test is not None:
        from compactnn.train import task_of

        metric = "accuracy" if task_of(test) == "classification" else "mse"
        x = test.tensors[0]
        rows = [("compact file", model, info.file_bytes)]
        rows.append(("dense twin (float32)", dense,
                     sum(4 * v.numel() for v in dense.state_dict().values())))
        if baseline is not None:
            rows.insert(0, ("baseline (float32)", baseline, baseline_bytes))
        ref = rows[0][2]
        for label, net, nbytes in rows:
            row: dict[str, Any] = {"model": label,
                                   metric: round(evaluate(net, test)[metric], 5),
                                   "bytes": nbytes}
            row["ratio"] = round(ref / nbytes, 2) if ref and nbytes else None
            for b in batch_sizes:
                t = model_latency(net, batch_of(x, b), repeats=repeats).median
                row[f"latency b={b} (ms)"] = round(1e3 * t, 3)
                row[f"throughput b={b} (/s)"] = round(b / t)
            summary.append(row)
            if nbytes:
                points.append(Point(label, int(nbytes), float(row[metric])))
        with torch.no_grad():
            same = torch.equal(model(x[:512]).argmax(1), dense(x[:512]).argmax(1)) \
                if metric == "accuracy" else None
        if same is not None:
            notes.append(f"Compact and dense-twin predictions on the first 512 test inputs "
                         f"{'agree' if same else 'DIFFER'}.")
    raw_total = sum(min(v for k, v in sizes[n].items() if k not in ("archive", "entropy bound"))
                    for n in sizes)
    notes.append(f"Sum over layers of the smallest runtime format: {raw_total} bytes; "
                 f"stored in this file: {sum(li.stored_bytes for li in info.layers)} bytes.")
    return ReportData(title=title or f"compactnn report: {os.path.basename(os.fspath(path))}",
                      metric=metric, summary=summary, layers_table=layers_table, sizes=sizes,
                      times=times, points=points, notes=notes + [f"metadata: {meta}"])


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bars(data: dict[str, dict[str, float]], ylabel: str, title: str, log: bool) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(data)
    keys = sorted({k for row in data.values() for k in row},
                  key=lambda k: (k in ("archive", "entropy bound"), k))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(layers) * len(keys) / 4), 4))
    width = 0.8 / max(len(keys), 1)
    for i, k in enumerate(keys):
        vals = [data[layer].get(k, np.nan) for layer in layers]
        ax.bar(np.arange(len(layers)) + i * width, vals, width, label=k,
               color=plt.cm.tab20(i % 20))
    ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2)
    ax.set_xticklabels([f"layer {n}" for n in layers])
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    out = _png(fig)
    plt.close(fig)
    return out


def _scatter(points: list[Point], metric: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for p in points:
        ax.scatter([p.bytes], [p.metric], s=40)
        ax.annotate(p.label, (p.bytes, p.metric), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("file bytes (log)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs size")
    out = _png(fig)
    plt.close(fig)
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(
        f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>" for c in cols)
        + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png_b64: str) -> str:
    return f'<img alt="plot" src="data:image/png;base64,{png_b64}">'


def render_html(data: ReportData) -> str:
    """One self-contained HTML page."""
    sizes_rows = [{"layer": n, **row} for n, row in data.sizes.items()]
    time_rows = [{"layer": n, **{k: f"{1e6 * v:.1f}" for k, v in row.items()}}
                 for n, row in data.times.items()]
    size_png = _bars(data.sizes, "bytes (log)", "bytes per layer and format", True)
    micro = {n: {k: 1e6 * v for k, v in r.items()} for n, r in data.times.items()}
    time_png = _bars(micro, "microseconds (log)", "matvec time per layer and format", True)
    parts = [
        f"<h1>{html.escape(data.title)}</h1>",
        "<h2>Baseline vs compact</h2>", _table(data.summary),
        "<h2>Layers in the file</h2>", _table(data.layers_table),
        "<h2>Size per layer and format (bytes)</h2>", _table(sizes_rows), _img(size_png),
        "<h2>Product time per layer and format (batch 1, microseconds)</h2>", _table(time_rows),
        _img(time_png),
    ]
    if data.points:
        parts += [f"<h2>{html.escape(data.metric)} vs size</h2>",
                  _img(_scatter(data.points, data.metric))]
    parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in data.notes] + ["</ul>"]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}th{background:#eee}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(data.title)}</title><style>{style}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def write_report(data: ReportData, path: str | os.PathLike) -> None:
    """Render and write the page atomically."""
    from compactnn.io.files import write_atomic

    write_atomic(path, render_html(data).encode("utf-8"))
