"""Compact inference layers and the model converter.

>>> import torch
>>> from torch import nn
>>> from compactnn.nn import to_compact, layer_records
>>> model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
>>> cm = to_compact(model, policy="smallest")
>>> [r.format for r in layer_records(cm)] == [r.format for r in layer_records(cm)]
True
"""

from compactnn.nn.convert import (
    POLICIES,
    STORAGES,
    compactable_layers,
    layer_records,
    to_compact,
    to_dense,
)
from compactnn.nn.layers import CompactConv2d, CompactLinear, LayerRecord, UnsupportedLayerError

__all__ = [
    "POLICIES",
    "STORAGES",
    "CompactConv2d",
    "CompactLinear",
    "LayerRecord",
    "UnsupportedLayerError",
    "compactable_layers",
    "layer_records",
    "to_compact",
    "to_dense",
]
