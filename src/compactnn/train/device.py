"""Where the lossy pipeline's forward passes run: a device and an autocast precision.

- :func:`best_device`: ``"cuda"`` when ``torch.cuda.is_available()``, else ``"cpu"``
  (the CLI's default).
- :func:`device_of`: the device a ``device`` argument names; ``None``: where the model is.
- :func:`on_device`: a context that moves a model to a device and back to where it was
  (parametrizations, masks and shared codebooks move with it, shared parameters stay
  shared), so the model is on its original device (the CPU) between steps and when it
  is converted to compact layers.
- :func:`autocast`: ``torch.autocast`` for ``"bf16"`` / ``"fp16"``, nothing for
  ``None`` / ``"none"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["AUTOCAST", "best_device", "device_of", "on_device", "autocast", "check_autocast"]

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""Autocast precision names and their dtypes (``"none"``: float32, no autocast)."""


def best_device() -> str:
    """``"cuda"`` if a CUDA device is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device ``device`` names (``ValueError`` for an unknown one or CUDA without a
    GPU); ``None``: the device of ``model`` 's first parameter (the CPU if it has none)."""
    if device is None:
        return _model_device(model)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r} (cpu, cuda, cuda:N, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return dev


@contextlib.contextmanager
def on_device(model: nn.Module, device: str | torch.device | None) -> Iterator[torch.device]:
    """Run the body with ``model`` on ``device`` (``None``: where it is); afterwards the
    model is back on the device it was on. Yields the device."""
    home = _model_device(model)
    dev = device_of(model, device)
    if dev == home:
        yield dev
        return
    model.to(dev)
    try:
        yield dev
    finally:
        model.to(home)


def check_autocast(precision: str | None) -> torch.dtype | None:
    """The dtype of ``precision`` (``"bf16"``, ``"fp16"``; ``None`` / ``"none"``: None);
    ``ValueError`` for another name."""
    if precision is None or precision == "none":
        return None
    if precision not in AUTOCAST:
        raise ValueError(f"autocast must be one of bf16, fp16, none; got {precision!r}")
    return AUTOCAST[precision]


def autocast(device: torch.device, precision: str | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` 's type in ``precision``; a no-op context for
    ``None`` / ``"none"``."""
    dtype = check_autocast(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
