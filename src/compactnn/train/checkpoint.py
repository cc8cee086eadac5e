"""Model checkpoints as safetensors files (data only: loading never runs code).

Shared tensors (one codebook used by several layers) are stored once, via
``safetensors.torch.save_model``. String metadata (e.g. the model name and its test
metrics) travels in the file's header.
"""

from __future__ import annotations

import json
import os

from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_metadata"]


def save_checkpoint(model: nn.Module, path: str | os.PathLike,
                    metadata: dict[str, str] | None = None) -> None:
    """Write ``model.state_dict()`` (parameters and buffers) to a safetensors file; the
    same model and metadata always give the same bytes."""
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    save_model(model, os.fspath(path), metadata=meta)
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(canonical_header(raw))


def canonical_header(raw: bytes) -> bytes:
    """The same safetensors bytes with the header written in one fixed order
    (metadata keys sorted, tensors by offset): safetensors writes its metadata map in
    hash order, which differs from run to run, so the same model would give other bytes.
    """
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", None)
    out: dict = {} if meta is None else {"__metadata__": dict(sorted(meta.items()))}
    out.update(sorted(head.items(), key=lambda kv: (kv[1]["data_offsets"][0], kv[0])))
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n:]


def load_checkpoint(model: nn.Module, path: str | os.PathLike,
                    strict: bool = True) -> dict[str, str]:
    """Load a file written by ``save_checkpoint`` into ``model`` (same architecture and
    same parametrizations) and return the file's metadata."""
    load_model(model, os.fspath(path), strict=strict)
    return checkpoint_metadata(path)


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata stored in a checkpoint's header."""
    with safe_open(os.fspath(path), "pt") as f:
        return dict(f.metadata() or {})
