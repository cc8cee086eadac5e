"""Model adapters: the one registry of how ``compactnn.load`` rebuilds a model.

A file's description says how its model is rebuilt, under ``model``, by one key:

- ``zoo``: a zoo model by name and JSON keyword arguments (``compactnn.zoo.build``; the
  MiniLM sentence encoder is the zoo model ``minilm``, whose tensor shapes the adapter
  declares from its config, so a file that does not fit is refused before
  ``transformers`` is imported);
- ``hf``: a Hugging Face ``transformers`` model: auto class, architecture, the
  ``config.json`` dict and the names of its tokenizer / processor files, whose bytes
  are tensors ``file:<name>`` of the file (:mod:`compactnn.zoo.hf`);
- none: a plain ``nn.Module``; the caller passes a skeleton
  (``load(path, model=...)``) or an import path ``package.module:factory``
  (``load(path, factory=...)``) that is called with no arguments. The path comes
  from the user, never from the file: a file never names code that loading imports.

An :class:`Adapter` is registered under its key with :func:`register`. The adapters
for models of higher layers (``compactnn.zoo``) register themselves when their module
is imported; the package root's ``compactnn.PROVIDERS["model_adapters"]`` lists those
modules, and :func:`get` imports them the first time a key is not registered yet (a
fixed table of this package: never a module a file names; ``io`` itself names no
higher layer).
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

__all__ = ["Adapter", "FILE_PREFIX", "register", "get", "keys", "spec_entries",
           "file_tensors", "build_from", "declared_shapes", "check_entries", "attach_files",
           "from_factory"]

FILE_PREFIX = "file:"
_FACTORY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
                      r":[A-Za-z_][A-Za-z0-9_]*$")

Shapes = dict[str, tuple[int, ...]]


def _no_shapes(spec: Any, source: str) -> Shapes | None:
    return None


@dataclass(frozen=True)
class Adapter:
    """How one kind of model is described, checked and rebuilt.

    Attributes:
        key: the description key (``model.<key>``).
        check: ``check(entry, source)``: raise ``CompactFileError`` on a bad entry;
            builds nothing, imports nothing heavy.
        build: ``build(entry, source, max_params)``: the model, large tensors on the
            meta device (``compactnn.io.meta.LargeOnMeta``).
        shapes: ``shapes(entry, source)``: the ``state_dict`` shapes of the model
            ``build`` would return, computed without building it (None: unknown);
            ``load`` compares them with the file before calling ``build``.
        spec: ``spec(model)``: the entry of a model about to be saved (None: not this
            kind); default: the model's ``<key>_spec`` attribute.
        files: whether the entry lists stored files (``file:<name>`` tensors).
    """

    key: str
    check: Callable[[Any, str], None]
    build: Callable[[Any, str, int], nn.Module]
    shapes: Callable[[Any, str], Shapes | None] = _no_shapes
    spec: Callable[[nn.Module], Any] | None = None
    files: bool = False

    def entry(self, model: nn.Module) -> Any:
        """The description entry of ``model`` for this adapter (None: not this kind)."""
        if self.spec is not None:
            return self.spec(model)
        return getattr(model, f"{self.key}_spec", None)


_ADAPTERS: dict[str, Adapter] = {}
_BUILT_IN = ("zoo", "hf")  # keys the providers register (a description may use them)
_provided = False


def _import_providers() -> None:
    """Import the modules that register this package's own adapters (once)."""
    global _provided
    if not _provided:
        import compactnn

        for module in compactnn.PROVIDERS["model_adapters"]:
            importlib.import_module(module)
        _provided = True


def register(adapter: Adapter) -> Adapter:
    """Add ``adapter`` to the registry under ``adapter.key`` (once per key)."""
    old = _ADAPTERS.get(adapter.key)
    if old is not None and old != adapter:
        raise ValueError(f"a model adapter for {adapter.key!r} is already registered")
    _ADAPTERS[adapter.key] = adapter
    return adapter


def keys() -> list[str]:
    """Every description key with an adapter (built in or registered)."""
    return list(dict.fromkeys([*_BUILT_IN, *_ADAPTERS]))


def get(key: str) -> Adapter:
    """The adapter for ``key``, importing the package's providers on first use."""
    if key not in _ADAPTERS:
        _import_providers()
    try:
        return _ADAPTERS[key]
    except KeyError:
        raise KeyError(f"no model adapter for {key!r}; known: {', '.join(keys())}") from None


def spec_entries(model: nn.Module) -> dict[str, Any]:
    """The description entries (other than ``zoo``, which ``save`` writes from its
    ``zoo`` argument) of a model about to be saved."""
    out = {}
    for key in keys():
        if key == "zoo" or getattr(model, f"{key}_spec", None) is None:
            continue
        spec = get(key).entry(model)
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


def _present(entry: dict[str, Any]) -> list[str]:
    return [k for k in keys() if entry.get(k) is not None]


def check_entries(entry: dict[str, Any], source: str) -> None:
    """Check every adapter entry of a description's ``model`` object; at most one may
    be set."""
    present = _present(entry)
    if len(present) > 1:
        raise CompactFileError(f"{source}: the model entry names more than one way to "
                               f"build it ({', '.join(present)})")
    for k in present:
        get(k).check(entry[k], source)


def declared_shapes(entry: dict[str, Any], source: str) -> Shapes | None:
    """The ``state_dict`` shapes of the model a checked ``model`` entry names, known
    without building it (None: unknown, or a custom model)."""
    for key in _present(entry):
        return get(key).shapes(entry[key], source)
    return None


def build_from(entry: dict[str, Any], arrays: dict[str, np.ndarray], used: set[str],
               source: str, max_params: int) -> nn.Module | None:
    """The model a description's ``model`` entry names (None: a custom model), with
    its stored files attached (``hf_files``) and marked as used."""
    for key in _present(entry):
        a = get(key)
        model = a.build(entry[key], source, max_params)
        if a.files:
            model.hf_files = attach_files(entry[key], arrays, used, source)
        return model
    return None


def attach_files(spec: dict[str, Any], arrays: dict[str, np.ndarray], used: set[str],
                 source: str) -> dict[str, bytes]:
    """``{name: bytes}`` of the files an entry lists (each a 1-D uint8 tensor)."""
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
