"""Model kinds: how the commands compress, convert, evaluate and benchmark each kind of
model, so no command branches on a model.

A kind (``Kind``) is one module here, keyed like the file's model entry that
``compactnn.io.adapters`` rebuilds (``zoo``, ``hf``): ``zoo`` (zoo models on a
dataset: ``train``'s checkpoints), ``minilm`` (all-MiniLM-L6-v2, a zoo entry named
``minilm``, measured on text corpora), ``hf`` (any Hugging Face folder). :data:`KINDS`
is tried in order: a more specific kind before the one it refines. Adding a kind:
one module with a ``Kind`` subclass and one line in :data:`KINDS`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from compactnn.errors import UserError

__all__ = ["Kind", "Source", "KINDS", "named", "of_entry", "source", "load_file"]


@dataclass
class Source:
    """A dense model that ``convert`` stores: the model, its zoo spec ``(name, kwargs)``
    (``None``: none), the metadata to copy into the compact file, and its model entry
    (``{"zoo": {"name": ..., "kwargs": ...}}`` or ``{"hf": ...}``, as in a file)."""

    model: Any
    zoo: tuple[str, dict[str, Any]] | None
    meta: dict[str, Any] = field(default_factory=dict)
    entry: dict[str, Any] = field(default_factory=dict)


class Kind:
    """One kind of model; every method a kind does not support raises ``UserError``."""

    name = ""
    baseline = "checkpoint"  # what the float32 size that ratios compare with is

    def names(self, arg: str) -> bool:
        """Whether a command argument names this kind's model without being a file of
        ours (``minilm``, a Hugging Face folder)."""
        return False

    def holds(self, entry: dict[str, Any]) -> bool:
        """Whether a file's (or checkpoint's) model entry is of this kind."""
        return False

    def source(self, arg: str) -> Source | None:
        """``convert``'s input as a dense model, or ``None``: not this kind's input."""
        return None

    def compress(self, a: argparse.Namespace) -> None:
        """``compactnn compress`` (checks first, then the recipe, then the output)."""
        raise UserError(f"compress does not take {self.name} models")

    def timing(self, src: Source, batch_size: int) -> tuple[int, Any]:
        """``(columns, example input)`` that policy ``fastest`` times the layers at."""
        return batch_size, None

    def dense_bytes(self, src: Source) -> int:
        """The float32 baseline size of ``src``'s model."""
        from compactnn.train.checkpoint import dense_file_bytes

        return dense_file_bytes(src.model)

    def describe(self, arg: str) -> str | None:
        """``compactnn inspect NAME`` of a named model (``None``: inspect it as a file)."""
        return None

    def evaluate(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        """``compactnn eval``'s output for a loaded compact file."""
        raise UserError(f"eval does not take {self.name} models")

    def bench(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        """``compactnn bench``'s table (``model`` None: a named model alone)."""
        raise UserError(f"bench does not take {self.name} models")


def _kinds() -> tuple[Kind, ...]:
    from compactnn.cli.models import hf, minilm, zoo

    return (minilm.KIND, hf.KIND, zoo.KIND)  # one line per kind, most specific first


KINDS = _kinds()


def named(arg: str) -> Kind | None:
    """The kind whose model ``arg`` names (not a file of ours), or ``None``."""
    return next((k for k in KINDS if k.names(arg)), None)


def of_entry(entry: dict[str, Any]) -> Kind | None:
    """The kind of a model entry (``None``: a custom model)."""
    return next((k for k in KINDS if k.holds(entry)), None)


def source(arg: str) -> tuple[Kind, Source]:
    """``convert``'s input: the first kind that takes ``arg``, the kind of its model."""
    for k in KINDS:
        src = k.source(arg)
        if src is not None:
            return of_entry(src.entry) or k, src
    raise UserError(f"{arg}: not a checkpoint, model folder or model name")


def load_file(path: str) -> tuple[Kind, Any, Any]:
    """``(kind, model, FileInfo)`` of a compact file whose model the CLI can rebuild."""
    from compactnn.io import CompactFileError, inspect, load

    info = inspect(path)
    kind = of_entry(info.model)
    if kind is None:
        raise CompactFileError(f"{path}: holds a custom model ({info.model['class']}); the "
                               "CLI can only rebuild zoo and Hugging Face models (use "
                               "compactnn.load in Python)")
    return kind, load(path), info
