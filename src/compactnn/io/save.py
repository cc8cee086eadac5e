"""``save``: a compact model as one safe file (``compactnn.io.container`` or the packed
layout of ``compactnn.io.packed``), refusing exactly what ``load`` refuses."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from compactnn.io import adapters, packed
from compactnn.io.checks import check_modules, check_state_tensor, prefix
from compactnn.io.container import canonical_json, check_tree, file_parts
from compactnn.io.files import write_atomic
from compactnn.io.schema import VERSION, Description, entry_for_module

__all__ = ["save"]


def _zoo_spec(model: nn.Module, zoo: Any) -> dict[str, Any] | None:
    spec = zoo if zoo is not None else getattr(model, "zoo_spec", None)
    if spec is None:
        return None
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        spec = {"name": spec[0], "kwargs": spec[1]}
    if (not isinstance(spec, dict) or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("kwargs", {}), dict)):
        raise TypeError("zoo must be (name, kwargs) or {'name': ..., 'kwargs': {...}}")
    kwargs = spec.get("kwargs", {})
    canonical_json(kwargs)  # must be JSON
    return {"name": spec["name"], "kwargs": kwargs}


def _layers(model: nn.Module, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every compact layer's entry (JSON); its arrays go to ``tensors``."""
    layers: dict[str, Any] = {}
    for name, m in model.named_modules():
        cls = entry_for_module(m)
        if cls is None:
            continue
        groups = len(m.matrices)
        attrs = None
        if m.archives:
            for g, a in enumerate(m.archives):
                tensors[f"{prefix(name, groups, g)}.archive"] = a.buffer
        else:
            attrs = []
            for g, M in enumerate(m.matrices):
                bufs, at = M.to_buffers()
                attrs.append({k: v for k, v in at.items()
                              if k not in ("format", "version", "shape")})
                for a, arr in bufs.items():
                    tensors[f"{prefix(name, groups, g)}.{a}"] = arr
        layers[name] = cls.from_module(m, attrs).to_json()
    return layers


def save(model: nn.Module, path: str | os.PathLike, *, zoo: Any = None,
         metadata: dict[str, Any] | None = None, pack: bool = False) -> int:
    """Write a compact model (from ``to_compact`` or ``load``) to one file; returns its size.

    Args:
        model: the model; its compact layers (every registered layer kind,
            ``compactnn.io.schema``) are stored in their formats (raw arrays or archive
            stream, as recorded by ``to_compact``), every other tensor of its
            ``state_dict`` as a plain tensor.
        path: destination; written atomically (temporary file + rename).
        zoo: ``(name, kwargs)`` of the zoo model it was built from, so ``load`` can
            rebuild it without a skeleton (default: ``model.zoo_spec`` if set).
        metadata: JSON-serialisable extra information (dataset, metrics, recipe).
        pack: write the packed layout (``compactnn.io.packed``: compressed description,
            entropy-coded float tensors; smallest, but other safetensors readers see
            one opaque tensor) instead of one safetensors tensor per array.

    The same model and arguments always give the same bytes.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    tensors: dict[str, np.ndarray] = {}
    layers = _layers(model, tensors)
    state = {}
    for k, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state entry {k!r} is not a tensor")
        if t.dtype == torch.bfloat16:
            raise TypeError(f"state entry {k!r}: bfloat16 tensors cannot be stored")
        state[k] = t.detach().cpu().contiguous().numpy()
    files = adapters.file_tensors(model)
    clash = (set(state) | set(files)) & set(tensors)
    if clash:
        raise ValueError(f"tensor names used twice: {sorted(clash)}")
    tensors.update(state)
    tensors.update(files)
    entry = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
             "zoo": _zoo_spec(model, zoo), **adapters.spec_entries(model)}
    desc = {"compactnn": VERSION, "model": entry, "layers": layers, "state": sorted(state),
            "metadata": metadata or {}}
    try:
        canonical_json(desc)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
    # refuse exactly what load() refuses, with the same messages
    source = os.fspath(path)
    check_tree(desc, f"{source}: description")
    Description.from_json(desc, source)
    for k in desc["state"]:
        check_state_tensor(k, state[k], source)
    check_modules(model, source)
    # the plain layout is written array by array: no copy of the file in memory
    parts = [packed.encode(tensors, desc)] if pack else file_parts(tensors, desc)
    write_atomic(path, parts)
    return sum(memoryview(p).nbytes for p in parts)
