"""Model adapters: the one registry of how ``compactnn.load`` rebuilds a model.

A file's description says how its model is rebuilt, under ``model``:

- ``zoo``: a zoo model by name and JSON keyword arguments (``compactnn.zoo.build``);
- ``hf``: a Hugging Face ``transformers`` model: auto class, architecture, the
  ``config.json`` dict and the names of its tokenizer / processor files, whose bytes
  are tensors ``file:<name>`` of the file (:mod:`compactnn.zoo.hf`);
- neither: a plain ``nn.Module``; the caller passes a skeleton
  (``load(path, model=...)``) or an import path ``package.module:factory``
  (``load(path, factory=...)``) that is called with no arguments. The path comes
  from the user, never from the file: a file never names code that loading imports.

:data:`ADAPTERS` maps each description key to its adapter, tried in order.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from compactnn.io.container import CompactFileError

__all__ = ["Adapter", "ADAPTERS", "FILE_PREFIX", "spec_entries", "file_tensors",
           "build_from", "check_entries", "from_factory"]

FILE_PREFIX = "file:"
_FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
                      r":[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Adapter:
    """How one kind of model is described (``spec``: the model's description entry or
    None), checked (``check``: raise on a bad entry, nothing built) and rebuilt
    (``build``: the model, large tensors on the meta device)."""

    key: str
    spec: Callable[[nn.Module], Any]
    check: Callable[[Any, str], None]
    build: Callable[[Any, str, int], nn.Module]


def _hf_spec(model: nn.Module) -> Any:
    spec = getattr(model, "hf_spec", None)
    if spec is None:
        return None
    return {**spec, "files": sorted(getattr(model, "hf_files", None) or {})}


def _hf_check(spec: Any, source: str) -> None:
    from compactnn.zoo import hf

    try:
        hf.check_spec(spec, source)
    except hf.HFError as exc:
        raise CompactFileError(str(exc)) from None


def _hf_build(spec: Any, source: str, max_params: int) -> nn.Module:
    from compactnn.zoo import hf

    try:
        return hf.build(spec, source, max_params)
    except hf.HFError as exc:
        raise CompactFileError(str(exc)) from None


def _zoo_check(spec: Any, source: str) -> None:
    from compactnn.io.model import _check_zoo_spec

    _check_zoo_spec(spec, source)


def _zoo_build(spec: Any, source: str, max_params: int) -> nn.Module:
    from compactnn.io.model import _zoo_model

    model = _zoo_model(spec, source, max_params)
    model.zoo_spec = spec
    return model


ADAPTERS: dict[str, Adapter] = {
    "hf": Adapter("hf", _hf_spec, _hf_check, _hf_build),
    "zoo": Adapter("zoo", lambda m: None, _zoo_check, _zoo_build),  # spec: io.model._zoo_spec
}


def spec_entries(model: nn.Module) -> dict[str, Any]:
    """The description entries (other than ``zoo``) of a model about to be saved."""
    out = {}
    for key, a in ADAPTERS.items():
        spec = a.spec(model)
        if spec is not None:
            out[key] = spec
    return out


def file_tensors(model: nn.Module) -> dict[str, np.ndarray]:
    """``file:<name>`` uint8 tensors of a Hugging Face model's tokenizer files."""
    files = getattr(model, "hf_files", None) or {}
    if files and getattr(model, "hf_spec", None) is None:
        raise TypeError("a model with hf_files needs an hf_spec")
    return {FILE_PREFIX + k: np.frombuffer(bytes(v), dtype=np.uint8).copy()
            for k, v in sorted(files.items())}


def check_entries(entry: dict[str, Any], source: str) -> None:
    """Check every adapter entry of a description's ``model`` object; at most one may
    be set."""
    present = [k for k in ADAPTERS if entry.get(k) is not None]
    if len(present) > 1:
        raise CompactFileError(f"{source}: the model entry names more than one way to "
                               f"build it ({', '.join(present)})")
    for k in present:
        ADAPTERS[k].check(entry[k], source)


def build_from(entry: dict[str, Any], arrays: dict[str, np.ndarray], used: set[str],
               source: str, max_params: int) -> nn.Module | None:
    """The model a description's ``model`` entry names (None: a custom model), with
    its stored files attached (``hf_files``) and marked as used."""
    for key, a in ADAPTERS.items():
        spec = entry.get(key)
        if spec is None:
            continue
        model = a.build(spec, source, max_params)
        if key == "hf":
            model.hf_files = attach_files(spec, arrays, used, source)
        return model
    return None


def attach_files(spec: dict[str, Any], arrays: dict[str, np.ndarray], used: set[str],
                 source: str) -> dict[str, bytes]:
    """``{name: bytes}`` of the files an ``hf`` entry lists (each a 1-D uint8 tensor)."""
    files = {}
    for name in spec["files"]:
        key = FILE_PREFIX + name
        a = arrays.get(key)
        if a is None or a.dtype != np.uint8 or a.ndim != 1:
            raise CompactFileError(f"{source}: file {name!r} is missing or not a uint8 "
                                   "vector")
        files[name] = a.tobytes()
        used.add(key)
    return files


def from_factory(path: str) -> nn.Module:
    """Call the user's ``package.module:factory`` (no arguments) for a skeleton.

    Raises:
        ValueError: a malformed path, an import failure or a factory that does not
            return an ``nn.Module``.
    """
    if not isinstance(path, str) or not _FACTORY.match(path):
        raise ValueError(f"factory must look like package.module:function, got {path!r}")
    module, _, attr = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import factory {path}: {exc}") from None
    model = fn()
    if not isinstance(model, nn.Module):
        raise ValueError(f"factory {path} returned {type(model).__name__}, not an nn.Module")
    return model
