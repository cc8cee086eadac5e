"""compactnn: make trained neural networks small and still runnable.

The public names are imported on first use (PEP 562), so ``import compactnn.cli`` stays
cheap and the command line can answer Ctrl-C with one line from its first moment.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "formats": ("compactnn.formats", None),
    "entropy_bits": ("compactnn.coding", "entropy_bits"),
    "load": ("compactnn.io", "load"),
    "save": ("compactnn.io", "save"),
    "to_compact": ("compactnn.nn", "to_compact"),
    "compress_": ("compactnn.transforms", "compress_"),
}

__all__ = ["formats", "entropy_bits", "load", "save", "to_compact", "compress_", "__version__"]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'compactnn' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
