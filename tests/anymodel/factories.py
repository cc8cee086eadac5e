"""A user factory for ``load(path, factory="tests.anymodel.factories:small_mlp")``."""

from torch import nn


def small_mlp() -> nn.Module:
    """The skeleton of the model the factory test saves."""
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
