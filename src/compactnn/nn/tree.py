"""Edits of a model's module tree shared by every step that swaps a layer."""

from __future__ import annotations

from torch import nn

__all__ = ["set_module"]


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at dotted path ``name`` (as ``named_modules`` gives it) by
    ``new``.

    >>> m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    >>> set_module(m, "1.0", nn.Tanh())
    >>> m[1][0]
    Tanh()
    """
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)
