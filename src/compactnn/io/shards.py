"""Lazy weights of a Hugging Face model folder: ``model.safetensors`` or the shards
``model-0000i-of-0000n.safetensors`` named by ``model.safetensors.index.json``, read one
tensor at a time through memory maps (``safetensors.safe_open``), never all at once.

Each shard gets the guards of a compact file (``compactnn.io.container``) before
``safetensors`` maps it: a regular file (no FIFO, device or directory, also not
behind a symlink), a header length that fits the file and ``MAX_HEADER``, strict
bounded JSON, known dtypes, shapes of non-negative integers and offsets that are
contiguous, match the shape's size and stay inside the file. The index is bounded
JSON too (``MAX_INDEX`` bytes) and may only name shard files in the folder.
"""

from __future__ import annotations

import os
import re

import torch

from compactnn.io.container import DTYPES, CompactFileError, header_length, parse_json
from compactnn.io.files import open_regular

__all__ = ["Shards", "MAX_INDEX", "read_small"]

MAX_INDEX = 64 << 20  # bytes of model.safetensors.index.json
_SHARD = re.compile(r"^[A-Za-z0-9_.-]+\.safetensors$")
_ITEMSIZE = {**{k: v.itemsize for k, v in DTYPES.items()}, "BF16": 2}


def read_small(path: str, limit: int, what: str) -> bytes:
    """The bytes of a small regular file, refused above ``limit`` bytes."""
    fd, size = open_regular(path, what)
    try:
        if size > limit:
            raise CompactFileError(f"{path}: {what} is larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(size + 1)
    finally:
        os.close(fd)
    if len(data) != size:
        raise CompactFileError(f"{path}: {what} changed size while being read")
    return data


def _header(path: str) -> dict[str, tuple[str, list[int]]]:
    """``{name: (dtype, shape)}`` of one shard, after checking its header."""
    fd, size = open_regular(path, "safetensors file")
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            n = header_length(f.read(8), size, str(path))
            raw = f.read(n)
    finally:
        os.close(fd)
    try:
        head = parse_json(raw.decode("ascii"), f"{path}: header")
    except UnicodeDecodeError:
        raise CompactFileError(f"{path}: header is not ASCII") from None
    if not isinstance(head, dict):
        raise CompactFileError(f"{path}: header is not a JSON object")
    out, spans, data_len = {}, [], size - 8 - n
    for name, info in head.items():
        if name == "__metadata__":
            continue
        if (not isinstance(info, dict) or info.get("dtype") not in _ITEMSIZE
                or not isinstance(info.get("shape"), list)
                or not all(type(s) is int and s >= 0 for s in info["shape"])):
            raise CompactFileError(f"{path}: tensor {name!r}: bad dtype or shape")
        offs = info.get("data_offsets")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)):
            raise CompactFileError(f"{path}: tensor {name!r}: bad data_offsets {offs!r}")
        nbytes = _ITEMSIZE[info["dtype"]]
        for s in info["shape"]:
            nbytes *= s
        if not 0 <= offs[0] <= offs[1] <= data_len or offs[1] - offs[0] != nbytes:
            raise CompactFileError(
                f"{path}: tensor {name!r}: offsets {offs} exceed the data ({data_len} bytes) "
                f"or disagree with shape {info['shape']} of {info['dtype']}")
        spans.append((offs[0], offs[1], name))
        out[name] = (info["dtype"], list(info["shape"]))
    spans.sort()
    end = 0
    for b, e, name in spans:
        if b < end:
            raise CompactFileError(f"{path}: tensor {name!r} overlaps another tensor")
        end = e
    return out


class Shards:
    """The tensors of a model folder's safetensors weights, by name, loaded one at a
    time (``get``) from memory maps; headers are checked on construction."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.fspath(folder)
        index = os.path.join(self.folder, "model.safetensors.index.json")
        single = os.path.join(self.folder, "model.safetensors")
        if os.path.lexists(index):
            doc = parse_json(read_small(index, MAX_INDEX, "index").decode("utf-8", "replace"),
                             f"{index}")
            wm = doc.get("weight_map") if isinstance(doc, dict) else None
            if not isinstance(wm, dict) or not all(
                    isinstance(v, str) and _SHARD.match(v) for v in wm.values()):
                raise CompactFileError(f"{index}: weight_map must map tensor names to "
                                       "shard file names in the folder")
            files = sorted(set(wm.values()))
        elif os.path.lexists(single):
            wm, files = None, ["model.safetensors"]
        else:
            raise CompactFileError(f"{self.folder}: no model.safetensors or "
                                   "model.safetensors.index.json")
        self._where: dict[str, str] = {}
        self._info: dict[str, tuple[str, list[int]]] = {}
        for name in files:
            path = os.path.join(self.folder, name)
            head = _header(path)
            for t, info in head.items():
                if t in self._where:
                    raise CompactFileError(f"{path}: tensor {t!r} is also in "
                                           f"{self._where[t]}")
                self._where[t] = path
                self._info[t] = info
        if wm is not None:
            for t, f in wm.items():
                if self._where.get(t) != os.path.join(self.folder, f):
                    raise CompactFileError(f"{index}: tensor {t!r} is not in {f}")

    def names(self) -> list[str]:
        """Every tensor name, sorted."""
        return sorted(self._where)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of ``name`` (from the checked header)."""
        return tuple(self._info[name][1])

    def nbytes(self) -> int:
        """Bytes of every tensor as stored."""
        total = 0
        for dt, shape in self._info.values():
            n = _ITEMSIZE[dt]
            for s in shape:
                n *= s
            total += n
        return total

    def get(self, name: str) -> torch.Tensor:
        """One tensor as float32 if it is floating point (its own memory, not a view of
        the map)."""
        from safetensors import safe_open

        try:
            path = self._where[name]
        except KeyError:
            raise CompactFileError(f"{self.folder}: no tensor {name!r} in the weights") from None
        with safe_open(path, framework="pt") as f:  # mapped only while it is read
            t = f.get_tensor(name).clone()
        return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t
