"""The description schema: one frozen entry class per layer kind, and the registry of
layer kinds, used by ``save`` (``from_module`` + ``to_json``), ``load`` and
``inspect`` (``from_json``, which validates) and the skeleton check (``check_module``).

A description (``Description``) is the JSON object stored in the container::

    {"compactnn": 1, "model": {...}, "layers": {name: entry, ...},
     "state": [plain tensor names], "metadata": {...}}

and a layer entry holds the fields of :class:`LayerEntry` plus its kind's own (e.g.
``conv`` for ``conv2d``). ``from_json`` checks types, bounds and names and raises
:class:`CompactFileError` with one line naming the layer and the field; nothing else
reads a raw entry.

Adding a layer kind: one module in ``compactnn/io/kinds/`` with a ``LayerEntry``
subclass decorated by :func:`register_kind`, and one import line in
``compactnn/io/kinds/__init__.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from torch import nn

from compactnn._validate import is_int as _is_int
from compactnn._validate import is_number
from compactnn.io.container import CompactFileError

__all__ = ["VERSION", "MAX_DIM", "MAX_ENTRIES", "STORAGES", "LayerEntry", "Description",
           "register_kind", "kind_of", "kinds", "entry_for_module", "is_int", "int_list"]

VERSION = 1
MAX_DIM = 2**31 - 1  # largest matrix side (column indices fit in uint32)
MAX_ENTRIES = 2**40  # largest matrix (rows x columns) a layer may declare
STORAGES = ("raw", "archive")
NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")

_KINDS: dict[str, type[LayerEntry]] = {}
E = TypeVar("E", bound=type)


def is_int(v: Any, lo: int = 0) -> bool:
    """``v`` is a Python int (not a bool, not a numpy integer) of at least ``lo``."""
    return _is_int(v, lo, numpy=False)


def int_list(v: Any, n: int, lo: int = 0) -> bool:
    """``v`` is a list of ``n`` ints of at least ``lo``."""
    return isinstance(v, list) and len(v) == n and all(is_int(i, lo) for i in v)


def register_kind(cls: E) -> E:
    """Class decorator: register a layer kind under ``cls.kind``."""
    if cls.kind in _KINDS and _KINDS[cls.kind] is not cls:
        raise ValueError(f"layer kind {cls.kind!r} is already registered")
    _KINDS[cls.kind] = cls
    return cls


def kinds() -> list[str]:
    """Registered layer kind names, in registration order."""
    _load_kinds()
    return list(_KINDS)


def kind_of(name: Any) -> type[LayerEntry] | None:
    """The entry class of layer kind ``name`` (None: not registered)."""
    _load_kinds()
    return _KINDS.get(name) if isinstance(name, str) else None


def entry_for_module(m: nn.Module) -> type[LayerEntry] | None:
    """The entry class that stores compact module ``m`` (None: a plain module)."""
    _load_kinds()
    for cls in _KINDS.values():
        if isinstance(m, cls.modules):
            return cls
    return None


def _load_kinds() -> None:
    from compactnn.io import kinds as _  # noqa: F401  (registers the built-in kinds)


def _bad(source: str, where: str, what: str) -> CompactFileError:
    return CompactFileError(f"{source}: {where}: {what}")


@dataclass(frozen=True)
class LayerEntry:
    """The fields every layer entry has; a kind adds its own (see ``conv2d``).

    ``shape`` is one group's matrix ``(m, n)``; ``attrs`` the format's JSON attributes
    per group (``raw`` storage; None for ``archive``); ``bytes`` the runtime arrays'
    size; ``entropy_bits`` the entropy bound of the weights (None if unknown)."""

    kind: ClassVar[str]
    modules: ClassVar[tuple[type[nn.Module], ...]]  # the compact modules saved as this kind
    format: str
    version: int
    shape: tuple[int, int]
    groups: int
    bias: bool
    bytes: int
    entropy_bits: float | None
    reason: str
    storage: str
    attrs: tuple[dict[str, Any], ...] | None

    # ---- the kind's own part (override) ------------------------------------------------
    @classmethod
    def own_fields(cls, m: nn.Module) -> dict[str, Any]:
        """The kind's own fields of compact module ``m`` (for ``save``)."""
        return {}

    @classmethod
    def own_from_json(cls, obj: dict[str, Any], common: dict[str, Any],
                      bad: Callable[[str], CompactFileError]) -> dict[str, Any]:
        """The kind's own fields parsed from ``obj`` (``bad(msg)`` makes the error)."""
        return {}

    def own_json(self) -> dict[str, Any]:
        """The kind's own fields as JSON."""
        return {}

    def check_module(self, m: nn.Module, bad: Callable[[str], CompactFileError]) -> None:
        """Raise ``bad(msg)`` unless skeleton module ``m`` has this entry's geometry."""
        raise NotImplementedError

    def build(self, matrices: list[Any], bias: Any) -> nn.Module:
        """The compact module for ``matrices`` (one per group) and ``bias``."""
        raise NotImplementedError

    def dense_shape(self) -> tuple[int, ...]:
        """Shape of the ``weight`` of the plain module this layer replaces."""
        raise NotImplementedError

    # ---- shared ----------------------------------------------------------------------
    @property
    def entries(self) -> int:
        """Matrix entries over all groups."""
        return self.groups * self.shape[0] * self.shape[1]

    @classmethod
    def from_module(cls, m: Any, attrs: list[dict[str, Any]] | None) -> LayerEntry:
        """The entry of compact module ``m`` (``CompactLinear``-like: ``matrices``,
        ``format_id``, ``record``, ``archives``, ``nbytes``, ``bias``)."""
        rec = m.record
        return cls(
            format=m.format_id, version=type(m.matrices[0]).version,
            shape=tuple(m.matrices[0].shape), groups=len(m.matrices),
            bias=m.bias is not None, bytes=m.nbytes,
            entropy_bits=round(float(rec.entropy_bits), 1) if rec else None,
            reason=rec.reason if rec else "loaded",
            storage="archive" if m.archives else "raw",
            attrs=None if m.archives else tuple(attrs or ()), **cls.own_fields(m))

    def to_json(self) -> dict[str, Any]:
        """The entry as stored in the description."""
        out: dict[str, Any] = {
            "kind": self.kind, "format": self.format, "version": self.version,
            "shape": list(self.shape), "groups": self.groups, "bias": self.bias,
            "bytes": self.bytes, "entropy_bits": self.entropy_bits, "reason": self.reason,
            "storage": self.storage, **self.own_json()}
        if self.attrs is not None:
            out["attrs"] = [dict(a) for a in self.attrs]
        return out

    @staticmethod
    def from_json(name: Any, obj: Any, source: str) -> LayerEntry:
        """Validate one stored entry and return it as its kind's class.

        Raises:
            CompactFileError: ``"<source>: layer '<name>': <problem>"``.
        """
        where = f"layer {name!r}"

        def bad(what: str) -> CompactFileError:
            return _bad(source, where, what)

        if not isinstance(name, str) or not NAME.match(name):
            raise bad("invalid layer name")
        cls = kind_of(obj.get("kind")) if isinstance(obj, dict) else None
        if cls is None:
            raise bad("unknown layer kind")
        allowed = {"kind", *(f.name for f in fields(cls))}
        extra = sorted(set(obj) - allowed)
        if extra:
            raise bad(f"unknown field(s) {extra[:5]}")
        if not isinstance(obj.get("format"), str) or not is_int(obj.get("version"), 1):
            raise bad("bad format id or version")
        shape, groups = obj.get("shape"), obj.get("groups")
        if not int_list(shape, 2) or not is_int(groups, 1):
            raise bad("bad shape or groups")
        m_rows, n_cols = shape
        if (max(m_rows, n_cols) > MAX_DIM or groups > MAX_DIM
                or m_rows * n_cols * groups > MAX_ENTRIES):
            raise bad(f"shape {shape} x {groups} group(s) is too large (at most {MAX_DIM} "
                      f"per side, {MAX_ENTRIES} entries)")
        if not isinstance(obj.get("bias"), bool) or obj.get("storage") not in STORAGES:
            raise bad("bad bias flag or storage")
        ent = obj.get("entropy_bits", "missing")
        if (not is_int(obj.get("bytes")) or not isinstance(obj.get("reason"), str)
                or not (ent is None or (isinstance(ent, (int, float)) and is_number(ent)
                                        and ent >= 0 and _finite(ent)))):
            raise bad("bad bytes, reason or entropy_bits")
        attrs = obj.get("attrs")
        if obj["storage"] == "raw":
            if (not isinstance(attrs, list) or len(attrs) != groups
                    or not all(isinstance(a, dict) for a in attrs)):
                raise bad("needs one attrs object per group")
            attrs = tuple(attrs)
        elif attrs is not None:
            raise bad("archive storage has no attrs")
        common = {"format": obj["format"], "version": obj["version"],
                  "shape": (m_rows, n_cols), "groups": groups, "bias": obj["bias"],
                  "bytes": obj["bytes"], "entropy_bits": ent, "reason": obj["reason"],
                  "storage": obj["storage"], "attrs": attrs}
        return cls(**common, **cls.own_from_json(obj, common, bad))


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


@dataclass(frozen=True)
class Description:
    """A validated description: ``model`` is the adapter entry (checked by
    ``compactnn.io.adapters``), ``layers`` the compact layers by module name, ``state``
    the names of the plain tensors."""

    model: dict[str, Any]
    layers: dict[str, LayerEntry]
    state: tuple[str, ...]
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The description object as stored (before the container adds checksums)."""
        return {"compactnn": VERSION, "model": self.model,
                "layers": {k: e.to_json() for k, e in self.layers.items()},
                "state": sorted(self.state), "metadata": self.metadata}

    @staticmethod
    def from_json(desc: Any, source: str) -> Description:
        """Validate a stored description (its adapter entry included).

        Raises:
            CompactFileError: one line naming the problem.
        """
        from compactnn.io import adapters

        if not isinstance(desc, dict) or desc.get("compactnn") != VERSION:
            got = desc.get("compactnn") if isinstance(desc, dict) else None
            raise CompactFileError(f"{source}: unsupported container version {got!r}")
        model, layers, state = desc.get("model"), desc.get("layers"), desc.get("state")
        if not isinstance(model, dict) or not isinstance(model.get("class"), str):
            raise CompactFileError(f"{source}: description has no model entry")
        adapters.check_entries(model, source)
        if not isinstance(layers, dict) or not isinstance(state, list):
            raise CompactFileError(f"{source}: description has no layer table or state list")
        if not isinstance(desc.get("metadata"), dict):
            raise CompactFileError(f"{source}: description metadata is not an object")
        entries = {name: LayerEntry.from_json(name, e, source) for name, e in layers.items()}
        if not all(isinstance(s, str) for s in state):
            raise CompactFileError(f"{source}: state list holds a non-string name")
        return Description(model=model, layers=entries, state=tuple(state),
                           metadata=desc["metadata"])
