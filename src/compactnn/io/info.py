"""``inspect``: what a file holds and where its bytes go, without building the model
(``check=True``: every array validated as ``load`` does)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compactnn.coding import archive
from compactnn.io.checks import archive_budget, check_state_tensor, err, matrices
from compactnn.io.load import MAX_PARAMS, model_for, read_description

__all__ = ["inspect", "FileInfo", "LayerInfo"]


@dataclass
class LayerInfo:
    """One compact layer of a file."""

    name: str
    kind: str
    format: str
    storage: str
    shape: tuple[int, int]
    groups: int
    weights: int
    stored_bytes: int
    runtime_bytes: int
    entropy_bits: float | None
    share: float
    coder: str = "-"  # archive storage: the archive coder(s), "ans" and/or "adaptive"

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.stored_bytes / self.weights if self.weights else 0.0

    @property
    def entropy_bits_per_weight(self) -> float | None:
        if self.entropy_bits is None or not self.weights:
            return None
        return self.entropy_bits / self.weights


@dataclass
class FileInfo:
    """What a file holds and where its bytes go."""

    path: str
    file_bytes: int
    header_bytes: int
    state_bytes: int
    layers: list[LayerInfo]
    model: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    validated: str = "checksums"
    """``"checksums"``: every checksum and the description's structure were verified;
    ``"arrays"`` (``inspect(check=True)``): also every layer's arrays (format checks,
    archive decoding) and the plain tensors, as ``load`` does."""

    def table(self) -> str:
        """The per-layer table as aligned text."""
        head = ("layer", "kind", "format", "stored as", "shape", "bytes", "bits/w",
                "entropy b/w", "share")
        rows = [head]
        for li in self.layers:
            shape = f"{li.groups}x{li.shape[0]}x{li.shape[1]}" if li.groups > 1 else \
                f"{li.shape[0]}x{li.shape[1]}"
            ent = li.entropy_bits_per_weight
            rows.append((li.name, li.kind, li.format,
                         f"archive({li.coder})->{li.format}" if li.storage == "archive"
                         else "raw", shape,
                         str(li.stored_bytes), f"{li.bits_per_weight:.3f}",
                         "-" if ent is None else f"{ent:.3f}", f"{100 * li.share:.1f}%"))
        for label, b in (("plain tensors", self.state_bytes), ("header", self.header_bytes)):
            rows.append((label, "", "", "", "", str(b), "", "",
                         f"{100 * b / self.file_bytes:.1f}%"))
        rows.append(("total", "", "", "", "", str(self.file_bytes), "", "", "100.0%"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i < 5 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)


def inspect(path: str | os.PathLike, *, check: bool = False) -> FileInfo:
    """Read a file's description (verifying every checksum) without building the model;
    with ``check=True`` also validate every array as ``load`` does, and the layers and
    plain tensors against the model the file names (its declared shapes, then built with
    its large tensors on the meta device). ``FileInfo.validated`` says which."""
    source = os.fspath(path)
    raw, arrays, desc, nbytes, header = read_description(path)
    if check:
        archive_budget(desc, len(raw), source)
        used: set[str] = set()
        model = model_for(desc, arrays, used, source, MAX_PARAMS)
        del model
        for name, e in desc.layers.items():
            matrices(e, name, arrays, used, source)
        for k in desc.state:
            if k not in arrays or k in used:
                raise err(source, f"state tensor {k!r} is missing")
            check_state_tensor(k, arrays[k], source)
            used.add(k)
        unused = sorted(set(arrays) - used)
        if unused:
            raise err(source, f"tensors not referenced by the description: {unused[:5]}")
    size = len(raw)
    infos = []
    for name, e in desc.layers.items():
        prefix = f"{name}.weight."
        stored = sum(b for k, b in nbytes.items() if k.startswith(prefix))
        m, n = e.shape
        coders = sorted({archive.Archive(a).coder for k, a in arrays.items()
                         if k.startswith(prefix) and k.endswith(".archive")
                         and isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 1
                         and a.size >= 20})
        infos.append(LayerInfo(
            name=name, kind=e.kind, format=e.format, storage=e.storage, shape=(m, n),
            groups=e.groups, weights=e.entries, stored_bytes=stored,
            runtime_bytes=e.bytes, entropy_bits=e.entropy_bits,
            share=stored / size, coder="+".join(coders) or "-"))
    state = sum(nbytes[k] for k in desc.state if k in nbytes)
    return FileInfo(path=source, file_bytes=size, header_bytes=header, state_bytes=state,
                    layers=infos, model=desc.model, metadata=desc.metadata,
                    validated="arrays" if check else "checksums")
