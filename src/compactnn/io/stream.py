"""Incremental, atomic, resumable writing of a compact file (``docs/file-format.md``,
"Streaming writes"): the same bytes as ``save`` of the whole model, with only one
part of the model in memory at a time.

``StreamWriter(path)`` appends each part's tensors (``add``: the compact layers and
plain tensors of one block) to a data file beside the destination,
``.<name>.stream-data``, recording each tensor's dtype, shape, offset and CRC-32.
``finish`` builds the header (the description with its checksums,
``container.layout``), writes header and the tensors in file order (copied from the
data file with ``os.sendfile``, never read into memory) into a temporary file, and
renames it over the destination (``files.write_atomic``); the data and state files
are then removed. ``checkpoint(extra)`` makes the parts written so far durable: the
data file is ``fsync``ed, then ``.<name>.stream-state.json`` (its length, the
entries, the layers and ``extra``) replaced atomically; ``StreamWriter(path,
resume=True)`` truncates the data file to the recorded length and continues, so a
run killed at any moment resumes from its last checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from compactnn.io.checks import check_modules, check_state_tensor
from compactnn.io.container import (
    CompactFileError,
    canonical_json,
    check_tree,
    crc32,
    layout,
    parse_json,
    stored,
)
from compactnn.io.files import write_atomic
from compactnn.io.save import _layers
from compactnn.io.schema import VERSION, Description

__all__ = ["StreamWriter", "state_path", "data_path"]

MAX_STATE = 256 << 20  # bytes of a state file


def data_path(path: str | os.PathLike) -> str:
    """``.<name>.stream-data`` beside ``path``."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{base}.stream-data")


def state_path(path: str | os.PathLike) -> str:
    """``.<name>.stream-state.json`` beside ``path``."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{base}.stream-state.json")


class StreamWriter:
    """Writes one compact file part by part (see the module docstring).

    Args:
        path: the destination.
        resume: continue from the state file of an interrupted run (``extra`` of its
            last ``checkpoint`` is ``self.extra``); a ``CompactFileError`` if there is
            none or it does not fit the data file. Without it, earlier state is discarded.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False) -> None:
        self.path = os.fspath(path)
        self._data, self._state = data_path(path), state_path(path)
        self.entries: list[tuple[str, str, list[int], int, int, str]] = []
        self.layers: dict[str, Any] = {}
        self.state: list[str] = []
        self.extra: dict[str, Any] = {}
        self._size = 0
        if resume:
            self._load_state()
            self._f = open(self._data, "r+b")
            self._f.truncate(self._size)
            self._f.seek(self._size)
        else:
            for p in (self._state, self._data):
                if os.path.lexists(p):
                    os.unlink(p)
            fd = os.open(self._data, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            self._f = os.fdopen(fd, "r+b")
        self._names = {e[0] for e in self.entries}

    def _load_state(self) -> None:
        from compactnn.io.shards import read_small

        if not os.path.lexists(self._state):
            raise CompactFileError(f"{self.path}: nothing to resume (no {self._state})")
        doc = parse_json(read_small(self._state, MAX_STATE, "stream state").decode("ascii"),
                         self._state)
        try:
            self._size = int(doc["size"])
            self.entries = [(n, d, list(s), int(o), int(b), c) for n, d, s, o, b, c
                            in doc["entries"]]
            self.layers, self.state, self.extra = doc["layers"], doc["state"], doc["extra"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CompactFileError(f"{self._state}: not a stream state ({exc})") from None
        end = sum(e[4] for e in self.entries)
        if end != self._size or not os.path.isfile(self._data) \
                or os.path.getsize(self._data) < self._size:
            raise CompactFileError(f"{self._state}: does not match {self._data}")

    def add(self, part: nn.Module, source: str = "") -> None:
        """Append a (compact) module's layers and plain tensors; its module names must
        be the names the full model gives them (a part built at their paths)."""
        source = source or self.path
        check_modules(part, source)
        tensors: dict[str, np.ndarray] = {}
        layers = _layers(part, tensors)
        self.append_arrays(tensors)
        self.layers.update(layers)
        self.add_state(part.state_dict(), source)

    def add_state(self, tensors: dict[str, torch.Tensor], source: str = "") -> None:
        """Append plain tensors (``state_dict`` entries that are not compact layers)."""
        state = {}
        for k, t in tensors.items():
            if not isinstance(t, torch.Tensor) or t.is_meta:
                raise ValueError(f"state entry {k!r} is not a tensor with data")
            if t.dtype == torch.bfloat16:
                raise TypeError(f"state entry {k!r}: bfloat16 tensors cannot be stored")
            a = t.detach().cpu().contiguous().numpy()
            check_state_tensor(k, a, source or self.path)
            state[k] = a
        self.append_arrays(state)
        self.state.extend(state)

    def append_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Append raw tensors (no description entry beyond their checksums)."""
        for name, arr in arrays.items():
            if name in self._names:
                raise ValueError(f"tensor names used twice: [{name!r}]")
            dt, a = stored(arr)
            self._f.write(memoryview(a.reshape(-1).view(np.uint8)))
            self.entries.append((name, dt, list(a.shape), self._size, a.nbytes, crc32(a)))
            self._names.add(name)
            self._size += a.nbytes

    def checkpoint(self, extra: dict[str, Any]) -> None:
        """Make everything added so far durable, with ``extra`` (JSON) for a resume."""
        self._f.flush()
        os.fsync(self._f.fileno())
        self.extra = extra
        doc = {"size": self._size, "entries": self.entries, "layers": self.layers,
               "state": self.state, "extra": extra}
        write_atomic(self._state, canonical_json(doc).encode("ascii"))

    def finish(self, model: dict[str, Any], metadata: dict[str, Any] | None = None) -> int:
        """Write the file (``model``: the description's model entry) and remove the
        data and state files; returns the file's size."""
        desc = {"compactnn": VERSION, "model": model, "layers": self.layers,
                "state": sorted(self.state), "metadata": metadata or {}}
        try:
            canonical_json(desc)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
        check_tree(desc, f"{self.path}: description")
        Description.from_json(desc, self.path)
        self._f.flush()
        head, order = layout([(n, d, s, b, c) for n, d, s, _, b, c in self.entries], desc)
        where = {n: (o, b) for n, _, _, o, b, _ in self.entries}

        def write(tmp: str) -> None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, head)
                src = self._f.fileno()
                for name in order:
                    off, left = where[name]
                    while left:
                        k = os.sendfile(fd, src, off, min(left, 1 << 30))
                        if k == 0:
                            raise OSError(f"{self._data} shrank while being copied")
                        off, left = off + k, left - k
            finally:
                os.close(fd)

        write_atomic(self.path, writer=write)
        self.close(remove=True)
        return len(head) + self._size

    def close(self, remove: bool = False) -> None:
        """Close the data file (and remove the data and state files with ``remove``)."""
        if not self._f.closed:
            self._f.close()
        if remove:
            for p in (self._state, self._data):
                if os.path.lexists(p):
                    os.unlink(p)

