"""compactnn: make trained neural networks small and still runnable.

The public names are imported on first use (PEP 562), so ``import compactnn.cli`` stays
cheap and the command line can answer Ctrl-C with one line from its first moment.
"""

from __future__ import annotations

import os
import signal
import sys


def _early_interrupt(signum, frame):  # pragma: no cover - only before the CLI's main()
    os.write(2, b"compactnn: interrupted\n")
    os._exit(130)


if sys.argv and (sys.argv[0] == "-m" or os.path.basename(sys.argv[0]) == "compactnn"):
    # this process is the command line (``compactnn`` or ``python -m compactnn.cli``):
    # Ctrl-C while it is still importing is one line and exit status 130 too
    signal.signal(signal.SIGINT, _early_interrupt)

import importlib  # noqa: E402

__version__ = "0.1.0"

_LAZY = {
    "formats": ("compactnn.formats", None),
    "entropy_bits": ("compactnn.coding", "entropy_bits"),
    "load": ("compactnn.io", "load"),
    "save": ("compactnn.io", "save"),
    "to_compact": ("compactnn.nn", "to_compact"),
    "compress_": ("compactnn.transforms", "compress_"),
    "set_num_threads": ("compactnn.kernels.backend", "set_num_threads"),
    "get_num_threads": ("compactnn.kernels.backend", "get_num_threads"),
}

#: Extension points that higher layers fill: registry -> the modules of this package that
#: register into it when imported. A lower layer imports them the first time it needs
#: the registry (``compactnn.io.adapters.get``), so it never names a higher layer itself;
#: the root is the one module that may name any (docs/architecture.md, "Layer order").
PROVIDERS: dict[str, tuple[str, ...]] = {
    "model_adapters": ("compactnn.zoo.adapters",),
}

__all__ = ["formats", "entropy_bits", "load", "save", "to_compact", "compress_",
           "set_num_threads", "get_num_threads", "__version__"]


def __getattr__(name: str) -> object:
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
