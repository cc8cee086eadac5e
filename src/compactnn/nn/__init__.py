"""Compact inference layers and the model converter.

>>> import torch
>>> from torch import nn
>>> from compactnn.nn import to_compact, layer_records
>>> model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
>>> cm = to_compact(model, policy="csr")
>>> [(r.name, r.format) for r in layer_records(cm)]
[('0', 'csr'), ('2', 'csr')]
>>> x = torch.randn(5, 8)
>>> torch.allclose(cm(x), model(x), atol=1e-6)
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
