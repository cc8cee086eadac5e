"""The checks ``save``, ``load`` and ``inspect`` share: a description against a model
(or the shapes its adapter declares), plain tensors, the archive budget, and each
layer's matrices decoded through their format's ``check()``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compactnn import formats
from compactnn.coding import archive
from compactnn.formats import FormatError
from compactnn.io.container import CompactFileError
from compactnn.io.schema import Description, LayerEntry

__all__ = ["ARCHIVE_FLOOR", "ARCHIVE_EXPANSION", "err", "prefix", "archive_budget",
           "check_state_tensor", "check_declared", "check_layers", "check_state_names",
           "check_modules", "matrices", "count_params"]

ARCHIVE_FLOOR = 2**24  # entries any file may decode from archives ...
ARCHIVE_EXPANSION = 16  # ... or this many per byte of the file, if more


def err(source: str, msg: str) -> CompactFileError:
    """``CompactFileError("<source>: <msg>")``."""
    return CompactFileError(f"{source}: {msg}")


def prefix(name: str, groups: int, g: int) -> str:
    """Tensor-name prefix of group ``g`` of layer ``name``'s matrices."""
    return f"{name}.weight" if groups == 1 else f"{name}.weight.{g}"


def _torch_dtype(a: np.ndarray) -> torch.dtype:
    return torch.from_numpy(np.empty(0, a.dtype)).dtype


def check_state_tensor(k: str, a: np.ndarray, source: str) -> None:
    """What ``save`` and ``load`` both refuse in a plain tensor."""
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise err(source, f"state tensor {k!r} has NaN or Inf")


def archive_budget(desc: Description, file_bytes: int, source: str) -> None:
    """Archives decode into dense matrices first: their total size is bounded by the
    file's size (``ARCHIVE_EXPANSION`` entries per byte, at least ``ARCHIVE_FLOOR``)."""
    total = sum(e.entries for e in desc.layers.values() if e.storage == "archive")
    limit = max(ARCHIVE_FLOOR, ARCHIVE_EXPANSION * file_bytes)
    if total > limit:
        raise err(source, f"archives would decode to {total} entries, more than this "
                  f"{file_bytes}-byte file may ({limit})")


def count_params(shapes: dict[str, tuple[int, ...]]) -> int:
    """Elements of every tensor in a shape table."""
    total = 0
    for s in shapes.values():
        n = 1
        for d in s:
            n *= d
        total += n
    return total


def check_declared(desc: Description, shapes: dict[str, tuple[int, ...]], source: str,
                   max_params: int, what: str) -> None:
    """The description against the ``state_dict`` shapes its adapter declares, before
    the model is built: every compact layer replaces a declared weight of its shape,
    with a bias exactly where one is declared; the plain tensors are the rest."""
    count = count_params(shapes)
    if count > max_params:
        raise err(source, f"{what} has {count} parameters, more than the limit {max_params}")
    rest = dict(shapes)
    for name, e in desc.layers.items():
        weight = rest.pop(f"{name}.weight", None)
        if weight is None:
            raise err(source, f"layer {name!r} does not exist in the model")
        if weight != e.dense_shape():
            raise err(source, f"layer {name!r}: file has shape {list(e.shape)} x {e.groups} "
                      f"group(s), the model's weight is {list(weight)}")
        if (f"{name}.bias" in shapes) != e.bias:
            raise err(source, f"layer {name!r}: bias {'present' if e.bias else 'absent'} in "
                      "the file but not in the model")
    state = set(desc.state)
    if state != set(rest):
        missing = sorted(set(rest) - state)
        extra = sorted(state - set(rest))
        raise err(source, f"state tensors do not match the model (missing {missing[:5]}, "
                  f"unexpected {extra[:5]})")


def check_layers(model: nn.Module, desc: Description, source: str) -> dict[str, nn.Module]:
    """Every layer entry against the model's module of that name; returns the modules."""
    targets = {}
    for name, e in desc.layers.items():
        try:
            targets[name] = model.get_submodule(name)
        except AttributeError:
            raise err(source, f"layer {name!r} does not exist in the model") from None
        e.check_module(targets[name], lambda msg, n=name: err(source, f"layer {n!r}: {msg}"))
    return targets


def check_state_names(model: nn.Module, desc: Description, arrays: dict[str, np.ndarray],
                      source: str) -> None:
    """Every plain tensor the file lists has the shape and dtype the model expects,
    and holds finite values (checked before any compact layer is decoded)."""
    expected = model.state_dict()
    prefixes = tuple(f"{name}." for name in desc.layers)
    for k in desc.state:
        if k not in arrays:
            raise err(source, f"state tensor {k!r} is missing")
        a = arrays[k]
        t = expected.get(k)
        if t is None:
            if k.startswith(prefixes):
                continue  # a compact layer's own tensor (its bias), checked after it is built
            raise err(source, f"state tensor {k!r} is not a tensor of the model")
        check_plain(k, a, tuple(t.shape), t.dtype, source)


def check_plain(k: str, a: np.ndarray, shape: tuple[int, ...], dtype: torch.dtype,
                source: str) -> None:
    """A plain tensor has the shape and dtype the model expects and finite values."""
    if tuple(a.shape) != shape or _torch_dtype(a) != dtype:
        raise err(source, f"state tensor {k!r} has {a.dtype}{list(a.shape)}, the model "
                  f"expects {dtype}{list(shape)}")
    check_state_tensor(k, a, source)


def check_modules(model: nn.Module, source: str) -> None:
    """Layer kinds stored as plain tensors that validate them (a ``check_state()``
    method, e.g. ``PackedEmbedding``): run before any forward pass can use them."""
    for name, mod in model.named_modules():
        check = getattr(mod, "check_state", None)
        if callable(check) and not any(t.is_meta for t in mod.buffers(recurse=False)):
            try:
                check()
            except ValueError as exc:
                raise err(source, f"module {name!r}: {exc}") from None


def matrices(e: LayerEntry, name: str, arrays: dict[str, np.ndarray], used: set[str],
             source: str) -> tuple[list[formats.CompactMatrix], list[archive.Archive] | None]:
    """Layer ``name``'s matrices (one per group), each through its format's
    ``check()`` (raw arrays) or decoded from its archive; marks the tensors used."""
    where = f"layer {name!r}"
    try:
        F = formats.get(e.format)
    except KeyError:
        raise err(source, f"{where}: unknown format {e.format!r} (available: "
                  f"{', '.join(formats.available())})") from None
    if e.version != F.version:
        raise err(source, f"{where}: format {e.format!r} version {e.version} is not "
                  f"supported (this library reads version {F.version})")
    mats, archives = [], None
    try:
        if e.storage == "archive":
            archives = []
            for g in range(e.groups):
                key = f"{prefix(name, e.groups, g)}.archive"
                if key not in arrays:
                    raise err(source, f"{where}: missing tensor {key!r}")
                used.add(key)
                M = F.from_dense(archive.decode(arrays[key], e.shape))
                M.check()
                mats.append(M)
                archives.append(archive.Archive(arrays[key]))
        else:
            for g, attrs in enumerate(e.attrs or ()):
                pre = prefix(name, e.groups, g) + "."
                bufs = {k[len(pre):]: v for k, v in arrays.items()
                        if k.startswith(pre) and "." not in k[len(pre):]}
                used.update(pre + k for k in bufs)
                at = {**attrs, "format": e.format, "version": e.version,
                      "shape": list(e.shape)}
                mats.append(F.from_buffers(bufs, at))
    except CompactFileError:
        raise
    except (FormatError, archive.ArchiveError) as exc:
        raise err(source, f"{where}: {exc}") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise err(source, f"{where}: invalid arrays ({type(exc).__name__}: {exc})") from None
    return mats, archives
