"""Model checkpoints as safetensors files (data only: loading never runs code).

Shared tensors (one codebook used by several layers) are stored once, via
``safetensors.torch.save_model``. String metadata (e.g. the model name and its test
metrics) travels in the file's header. Writes go through the package's one atomic
writer (``io.files.write_atomic``); reads get the compact files' guards (a regular
file only, the header read and checked before any tensor).
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_metadata", "read_header",
           "dense_file_bytes"]


def save_checkpoint(model: nn.Module, path: str | os.PathLike,
                    metadata: dict[str, str] | None = None) -> None:
    """Write ``model.state_dict()`` (parameters and buffers) to a safetensors file,
    atomically (an existing target keeps its permissions); the same model and metadata
    always give the same bytes."""
    from compactnn.io.files import write_atomic  # lazy: io loads the compact layers

    meta = {str(k): str(v) for k, v in (metadata or {}).items()}

    def write(tmp: str) -> None:
        save_model(model, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            raw = f.read()
        with open(tmp, "wb") as f:
            f.write(canonical_header(raw))

    write_atomic(path, writer=write)


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


def read_header(path: str | os.PathLike) -> tuple[dict[str, str],
                                                 dict[str, tuple[tuple[int, ...], str]]]:
    """``(metadata, {tensor name: (shape, dtype)})`` of a checkpoint, nothing else read.

    Raises ``CompactFileError`` (one line) for a missing path, anything but a regular
    file, or a file safetensors cannot parse."""
    from compactnn.io.container import CompactFileError
    from compactnn.io.files import open_regular

    p = os.fspath(path)
    fd, _ = open_regular(p, "checkpoint file")
    os.close(fd)
    try:
        with safe_open(p, "pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                       for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:  # safetensors raises its own error type
        msg = " ".join(str(exc).split())[:200]
        raise CompactFileError(f"{p}: not a readable safetensors checkpoint ({msg})") from None
    return meta, tensors


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


def dense_file_bytes(model: nn.Module) -> int:
    """Size of the model's float32 ``state_dict`` as a safetensors file (the baseline
    every compression ratio is measured against; every tensor counted)."""
    from safetensors.torch import save

    state = {k: v.detach().to(torch.float32).contiguous() if v.is_floating_point()
             else v.detach().contiguous() for k, v in model.state_dict().items()}
    return len(save(state))
