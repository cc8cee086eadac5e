"""Structured layers (``PermutedLinear``, ``BlockDiagLinear``, ``BlockDiagConv2d``) and
block-masked ``nn.Linear`` / ``nn.Conv2d`` as seen by ``to_compact`` and ``load``.

``to_compact`` converts a structured layer through its plain twin (``dense_twin``: the
``nn.Linear`` / ``nn.Conv2d`` computing the same function, in the original row and
column order, so fused block permutations are undone) and offers every format the
twin's weight; for the layer's own format it uses the layer's exact encoding
(``structured_encodings``): a seeded ``permseq`` stores only the base sequences and a
seed, a block-masked layer's ``blockdiag`` only its blocks and a seed, where encoding
the dense weight would store the permutations or the layout too.
"""

from __future__ import annotations

from torch import nn

from compactnn.formats import CompactMatrix
from compactnn.nn.blockdiag import BlockDiagConv2d, BlockDiagLinear, blockdiag_matrix
from compactnn.nn.permuted import PermutedLinear

__all__ = ["STRUCTURED", "LINEAR_LIKE", "CONV_LIKE", "dense_twin", "structured_encodings",
           "geometry_shell"]

STRUCTURED = (PermutedLinear, BlockDiagLinear, BlockDiagConv2d)
LINEAR_LIKE = (nn.Linear, PermutedLinear, BlockDiagLinear)
CONV_LIKE = (nn.Conv2d, BlockDiagConv2d)


def dense_twin(layer: nn.Module) -> nn.Module:
    """``layer`` itself for a plain ``nn.Linear`` / ``nn.Conv2d``; for a structured layer
    the plain layer that computes the same function (same bias)."""
    if isinstance(layer, (PermutedLinear, BlockDiagLinear)):
        return layer.to_linear()
    if isinstance(layer, BlockDiagConv2d):
        return layer.to_conv()
    return layer


def structured_encodings(layer: nn.Module) -> dict[str, CompactMatrix]:
    """Format id -> the layer's own lossless encoding of its ``(out, in*kh*kw)`` weight:
    ``permseq`` for a ``PermutedLinear`` (seed or stored indices), ``blockdiag`` for a
    block-diagonal layer or a block-masked (``layer.block_mask``) linear / conv layer
    whose weight is still +0.0 outside the blocks. Empty for any other layer."""
    if isinstance(layer, PermutedLinear):
        return {"permseq": layer.to_permseq()}
    if isinstance(layer, (BlockDiagLinear, BlockDiagConv2d)) or hasattr(layer, "block_mask"):
        try:
            return {"blockdiag": blockdiag_matrix(layer)}
        except (TypeError, ValueError):  # changed after masking: the dense encodings apply
            return {}
    return {}


def geometry_shell(layer: nn.Module) -> nn.Module:
    """A weightless (``device="meta"``) plain twin of a structured layer, for geometry
    checks; any other layer is returned as it is."""
    if isinstance(layer, (PermutedLinear, BlockDiagLinear)):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                         device="meta")
    if isinstance(layer, BlockDiagConv2d):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                         layer.stride, layer.padding, layer.dilation,
                         bias=layer.bias is not None, device="meta")
    return layer
