"""The end-to-end steps shared by the CLI, the demo and ``benchmarks/end_to_end.py``:
model arguments for a dataset, checkpoints that remember their zoo model, the float32
baseline file size, and the baseline-vs-compact comparison (metric, file bytes, ratio,
latency, throughput, prediction agreement).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

__all__ = ["RECIPES", "Row", "batch_of", "model_kwargs", "dense_file_bytes", "compact_bytes",
           "save_checkpoint",
           "load_checkpoint", "compare", "predictions_agree", "format_rows"]

# Recipes used by the demo and the end-to-end benchmark (compactnn.transforms format).
RECIPES: dict[str, list[dict[str, Any]]] = {
    # strong decoupled weight decay (AdamW 0.2: each step shrinks weights by lr * 0.2)
    # keeps the sparse net from overfitting; uniform quantization has a lower entropy
    # than k-means sharing at the same k
    "lenet300": [
        {"method": "prune", "p": 94, "scope": "global", "schedule": [50, 70, 80, 87, 91, 93],
         "finetune": {"epochs": 2, "lr": 1e-3, "weight_decay": 0.2}},
        {"method": "finetune", "epochs": 8, "lr": 1e-3, "weight_decay": 0.2},
        {"method": "uq", "k": 16},
        {"method": "finetune", "epochs": 3, "lr": 1e-4, "weight_decay": 0.2},
    ],
    "lenet5": [
        {"method": "prune", "p": 93, "scope": "global", "schedule": [60, 80, 90],
         "finetune": {"epochs": 1, "lr": 1e-3, "weight_decay": 1e-4}},
        {"method": "finetune", "epochs": 3, "lr": 5e-4, "weight_decay": 1e-4},
        {"method": "cws", "k": 16},
        {"method": "finetune", "epochs": 2, "lr": 1e-4, "weight_decay": 1e-4},
    ],
    "demo": [
        {"method": "prune", "p": 94, "scope": "global", "schedule": [70, 88],
         "finetune": {"epochs": 1, "lr": 1e-3}},
        {"method": "finetune", "epochs": 1, "lr": 5e-4},
        {"method": "cws", "k": 16},
        {"method": "finetune", "epochs": 1, "lr": 1e-4},
    ],
    # the demo's fallback: 45x fewer images, so more epochs, and per-layer pruning (with
    # 64 inputs, global magnitude pruning would empty the 300x100 layer)
    "demo-digits": [
        {"method": "prune", "p": 90, "scope": "layer", "schedule": [50, 75],
         "finetune": {"epochs": 10, "lr": 1e-3}, "overrides": {"5": {"p": 60}}},
        {"method": "finetune", "epochs": 10, "lr": 5e-4},
        {"method": "cws", "k": 16},
        {"method": "finetune", "epochs": 5, "lr": 1e-4},
    ],
}


def model_kwargs(name: str, data: TensorDataset) -> dict[str, Any]:
    """Constructor arguments of zoo model ``name`` for a dataset's input shape and
    number of classes (or regression outputs)."""
    x, y = data.tensors
    shape = tuple(x.shape[1:])
    flat = int(torch.tensor(shape).prod())
    regression = torch.is_floating_point(y)
    outputs = int(y.shape[1]) if regression else int(y.max()) + 1
    if name in ("lenet300",):
        if regression:
            raise ValueError("lenet300 is a classifier; use 'mlp' for regression datasets")
        return {"in_features": flat, "num_classes": outputs}
    if name == "mlp":
        return {"in_features": flat, "out_features": outputs}
    if name in ("lenet5", "vgg_small"):
        if len(shape) != 3:
            raise ValueError(f"{name} needs image inputs (C, H, W), the dataset has {shape}")
        if regression:
            raise ValueError(f"{name} is a classifier; use 'mlp' for regression datasets")
        kw = {"in_channels": shape[0], "num_classes": outputs}
        if name == "lenet5":
            kw["image_size"] = shape[1]
        return kw
    from compactnn import zoo

    raise ValueError(f"unknown model {name!r}; available: {', '.join(zoo.MODELS)}")


def dense_file_bytes(model: nn.Module) -> int:
    """Size of the model's float32 ``state_dict`` as a safetensors file (the baseline
    every compression ratio is measured against; every tensor counted)."""
    from safetensors.torch import save

    state = {k: v.detach().to(torch.float32).contiguous() if v.is_floating_point()
             else v.detach().contiguous() for k, v in model.state_dict().items()}
    return len(save(state))


def compact_bytes(model: nn.Module) -> int:
    """Bytes a compact model's file would have (``save`` to memory, nothing written)."""
    import tempfile

    from compactnn.io import save

    with tempfile.TemporaryDirectory() as d:
        return save(model, os.path.join(d, "m.cnn"), zoo=getattr(model, "zoo_spec", None))


def save_checkpoint(model: nn.Module, path: str | os.PathLike, name: str,
                    kwargs: dict[str, Any], **info: Any) -> None:
    """Save a dense (possibly constrained) zoo model with its name, constructor
    arguments and ``info`` (JSON values) in the header; written atomically (an
    existing file keeps its permissions)."""
    from compactnn.io.container import write_atomic
    from compactnn.train import save_checkpoint as save_ckpt

    meta = {"model": name, "model_kwargs": json.dumps(kwargs, sort_keys=True)}
    meta.update({k: json.dumps(v, sort_keys=True) for k, v in info.items()})
    write_atomic(path, writer=lambda tmp: save_ckpt(model, tmp, meta))


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, str, dict[str, Any],
                                                      dict[str, Any]]:
    """``(model, zoo name, kwargs, info)`` of a checkpoint written by ``save_checkpoint``.

    The same guards as for compact files: a regular file only, strict bounded JSON
    metadata, and the zoo model built with its large tensors on the meta device and
    compared tensor by tensor (names, shapes, dtypes) with the checkpoint's header
    before the real model is built. Raises ``CompactFileError`` (a ``ValueError``)
    naming the problem for a missing, foreign, corrupt or mismatched file."""
    from safetensors import safe_open

    from compactnn import zoo
    from compactnn.io.container import CompactFileError, open_regular, parse_json
    from compactnn.io.meta import LargeOnMeta as _LargeOnMeta
    from compactnn.train import load_checkpoint as load_ckpt

    p = os.fspath(path)
    fd, _ = open_regular(p, "checkpoint file")
    os.close(fd)
    try:
        with safe_open(p, "pt") as f:
            meta = dict(f.metadata() or {})
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                      for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:  # safetensors raises its own error type
        msg = " ".join(str(exc).split())[:200]
        raise CompactFileError(f"{p}: not a readable safetensors checkpoint ({msg})") from None
    if "model" not in meta or "model_kwargs" not in meta:
        raise CompactFileError(f"{p}: checkpoint does not say which zoo model it holds "
                               "(write it with `compactnn train`)")
    kwargs = parse_json(meta["model_kwargs"], f"{p}: model_kwargs")
    info = {k: parse_json(v, f"{p}: {k}") for k, v in meta.items()
            if k not in ("model", "model_kwargs")}
    name = meta["model"]
    if not isinstance(kwargs, dict) or name not in zoo.MODELS or len(meta["model_kwargs"]) > 4096:
        raise CompactFileError(f"{p}: unknown zoo model {name!r} or bad arguments "
                               f"(available: {', '.join(zoo.MODELS)})")
    try:
        with _LargeOnMeta():
            probe = zoo.build(name, **kwargs)
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError,
            RecursionError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise CompactFileError(f"{p}: cannot build zoo model {name!r} with {kwargs}: {msg}") \
            from None
    expected = {k: tuple(t.shape) for k, t in probe.state_dict().items()}
    del probe
    # shared tensors are stored once: a tensor the header lacks must have the shape of
    # one it holds, so the real model is no larger than the checkpoint says
    stored = {shape for shape, _ in header.values()}
    bad = sorted([k for k in header if expected.get(k) != header[k][0]]
                 + [k for k in expected if k not in header and expected[k] not in stored])
    if bad:
        raise CompactFileError(f"{p}: checkpoint does not fit model {name!r} "
                               f"(tensors {bad[:3]} differ)")
    model = zoo.build(name, **kwargs)
    try:
        load_ckpt(model, p)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise CompactFileError(f"{p}: checkpoint does not fit model {name!r} ({msg})") \
            from None
    return model.eval(), name, kwargs, info


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
    from compactnn.zoo import task_of

    metric_name = "accuracy" if task_of(test) == "classification" else "mse"
    x = test.tensors[0]
    ref = models[0][2]
    rows = []
    for label, model, nbytes in models:
        metric = evaluate(model, test)[metric_name]
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
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
