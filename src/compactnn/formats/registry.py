"""The registry of formats, keyed by ``format_id``: importing a format module runs its
``@register`` decorator (``compactnn.formats`` imports every module, so registration
order is the order of ``available()``)."""

from __future__ import annotations

from compactnn.formats.base import CompactMatrix

__all__ = ["register", "get", "available", "registered"]

_REGISTRY: dict[str, type[CompactMatrix]] = {}


def register(cls: type[CompactMatrix]) -> type[CompactMatrix]:
    """Class decorator: add a format to the registry under its ``format_id``."""
    fid = cls.format_id
    if fid in _REGISTRY and _REGISTRY[fid] is not cls:
        raise ValueError(f"format id {fid!r} is already registered")
    _REGISTRY[fid] = cls
    return cls


def get(format_id: str) -> type[CompactMatrix]:
    """Return the format class registered under ``format_id``."""
    try:
        return _REGISTRY[format_id]
    except KeyError:
        raise KeyError(
            f"unknown format {format_id!r}; available: {', '.join(available())}"
        ) from None


def available() -> list[str]:
    """Ids of the formats conversion chooses from (``automatic``), in registration order."""
    return [fid for fid, cls in _REGISTRY.items() if cls.automatic]


def registered() -> list[str]:
    """Ids of every registered format (``automatic`` or not), in registration order:
    what ``get`` and files accept and what the conformance suite runs."""
    return list(_REGISTRY)
