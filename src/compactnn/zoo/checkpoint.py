"""Checkpoints that remember their zoo model: the name and JSON constructor arguments
in the header (``model``, ``model_kwargs``) beside any JSON ``info``, on top of
``compactnn.train.checkpoint`` (atomic, canonical bytes, guarded reads).

Loading gets the compact files' guards: the zoo model is first built through the
``zoo`` model adapter (``compactnn.io.adapters``: large tensors on the meta device)
and compared tensor by tensor with the checkpoint's header before the real model is
built, so a checkpoint cannot make ``load_checkpoint`` allocate more than it holds.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from torch import nn

from compactnn.io import adapters
from compactnn.io.container import CompactFileError, parse_json
from compactnn.train import checkpoint
from compactnn.zoo.models import MODELS, build

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(model: nn.Module, path: str | os.PathLike, name: str,
                    kwargs: dict[str, Any], **info: Any) -> None:
    """Save a dense (possibly constrained) zoo model with its name, constructor
    arguments and ``info`` (JSON values) in the header; written atomically (an
    existing file keeps its permissions)."""
    meta = {"model": name, "model_kwargs": json.dumps(kwargs, sort_keys=True)}
    meta.update({k: json.dumps(v, sort_keys=True) for k, v in info.items()})
    checkpoint.save_checkpoint(model, path, meta)


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, str, dict[str, Any],
                                                      dict[str, Any]]:
    """``(model, zoo name, kwargs, info)`` of a checkpoint written by ``save_checkpoint``.

    Raises ``CompactFileError`` naming the problem for a missing, foreign, corrupt or
    mismatched file."""
    p = os.fspath(path)
    meta, header = checkpoint.read_header(p)
    if "model" not in meta or "model_kwargs" not in meta:
        raise CompactFileError(f"{p}: checkpoint does not say which zoo model it holds "
                               "(write it with `compactnn train`)")
    kwargs = parse_json(meta["model_kwargs"], f"{p}: model_kwargs")
    info = {k: parse_json(v, f"{p}: {k}") for k, v in meta.items()
            if k not in ("model", "model_kwargs")}
    name = meta["model"]
    if not isinstance(kwargs, dict) or name not in MODELS or len(meta["model_kwargs"]) > 4096:
        raise CompactFileError(f"{p}: unknown zoo model {name!r} or bad arguments "
                               f"(available: {', '.join(MODELS)})")
    # the zoo adapter builds it with its large tensors on the meta device; the header
    # bounds the model (the size limit is the shape comparison below)
    entry = {"zoo": {"name": name, "kwargs": kwargs}}
    adapters.check_entries(entry, p)
    probe = adapters.build_from(entry, {}, set(), p, sys.maxsize)
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
    model = build(name, **kwargs)
    try:
        checkpoint.load_checkpoint(model, p)
    except Exception as exc:  # safetensors / torch raise their own error types
        msg = " ".join(str(exc).split())[:200]
        raise CompactFileError(f"{p}: checkpoint does not fit model {name!r} ({msg})") \
            from None
    return model.eval(), name, kwargs, info
