"""MPDCompress: block-diagonal masks under seeded random permutations (Supic et al.,
arXiv 1805.12085).

Only the paper's abstract was available; this formulation is a **[choice]**
(``docs/architecture/structured.md``):

- ``BlockMask((m, n), N, seed)`` (``compactnn.nn.blockdiag``): rows and columns are
  permuted by seeded random permutations and split into ``N`` parts as evenly as
  ``numpy.array_split`` does (uneven splits allowed); ``M[i, j] = 1`` iff row ``i`` and
  column ``j`` fall in the same part, i.e. ``M = P · blockdiag(1 .. 1) · Q``.
- Masked training: ``block_mask_`` makes the weight ``where(M, W, 0)`` (a
  ``Masked`` parametrization, like pruning), so masked weights are exactly +0.0 and
  get no gradient; ``compactnn.transforms.prune.bake_`` makes it permanent. A
  ``Conv2d`` is masked by channel groups: ``M[o, c]`` over (out, in) channels,
  broadcast over the kernel window. The recipe step is ``MPD``
  (``transforms/steps/mpd.py``; ``mpd_(model, MPD(...))``).
- Inference: ``to_block_diagonal_`` replaces each masked layer by a
  ``BlockDiagLinear`` / ``BlockDiagConv2d`` (``compactnn.nn.blockdiag``) and fuses the
  permutations of consecutive ones.
- Composition: masks come first; pruning intersects its mask with the block mask
  and weight sharing keeps the zeros, so the blocks of a pruned and weight-shared
  layer can be stored in any registered format (``CompactBlocks``, the registered
  format ``compact_blocks`` of ``compactnn.formats.compact_blocks``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from compactnn.formats.compact_blocks import CompactBlocks
from compactnn.nn.blockdiag import (
    BlockDiagConv2d,
    BlockDiagLinear,
    BlockMask,
    blockdiag_matrix,
    fuse_permutations_,
)
from compactnn.nn.tree import set_module
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.prune import Masked, constraint_of, layers_of

__all__ = [
    "BlockMask",
    "BlockMasked",
    "block_mask_",
    "BlockDiagLinear",
    "BlockDiagConv2d",
    "to_block_diagonal_",
    "fuse_permutations_",
    "CompactBlocks",
    "mask_shape",
    "blockdiag_matrix",
]

class BlockMasked(Masked):
    """The ``Masked`` parametrization of a block mask (``spec`` says which)."""

    def __init__(self, mask: torch.Tensor, spec: BlockMask) -> None:
        super().__init__(mask)
        self.spec = spec


def mask_shape(layer: nn.Module) -> tuple[int, int]:
    """The (rows, columns) a block mask of ``layer`` covers: (out, in) features of an
    ``nn.Linear``, (out, in) channels of an ``nn.Conv2d`` (``groups=1`` only)."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise RecipeError("block masks need a Conv2d with groups=1")
        return layer.out_channels, layer.in_channels
    if isinstance(layer, nn.Linear):
        return layer.out_features, layer.in_features
    raise TypeError(f"block masks apply to nn.Linear and nn.Conv2d, got {type(layer).__name__}")


@torch.no_grad()
def block_mask_(layer: nn.Module, blocks: int, seed: int,
                rescale_init: bool = False) -> BlockMask:
    """Mask ``layer``'s weight with a seeded ``blocks``-block mask (in place); the spec
    is kept as ``layer.block_mask`` (it survives ``bake_``).

    ``rescale_init`` multiplies the weights by ``density ** -0.5`` (about ``sqrt(N)``), so a
    freshly initialised layer keeps the output scale of its default initialisation with
    the smaller fan-in (use it when training from scratch, not on trained weights).
    """
    try:
        spec = BlockMask(mask_shape(layer), blocks, seed)
    except ValueError as e:
        raise RecipeError(str(e)) from None
    if constraint_of(layer) is not None or hasattr(layer, "block_mask"):
        raise RecipeError("apply block masks before pruning or weight sharing, once per layer")
    if rescale_init and spec.density > 0:
        layer.weight.mul_(spec.density**-0.5)
    mask = torch.from_numpy(spec.dense()).to(layer.weight.device)
    mask = mask.reshape(mask.shape + (1,) * (layer.weight.dim() - 2)).expand_as(layer.weight)
    parametrize.register_parametrization(layer, "weight", BlockMasked(mask.clone(), spec))
    layer.block_mask = spec
    return spec


def to_block_diagonal_(model: nn.Module, fuse: bool = True) -> dict[str, nn.Module]:
    """Replace every block-masked ``nn.Linear`` / ``nn.Conv2d`` of ``model`` (masked or
    baked) by its block-diagonal layer, in place; then, with ``fuse``, fuse the
    permutations of consecutive ones (``fuse_permutations_``). Returns the new layers."""
    done: dict[str, nn.Module] = {}
    for name, layer in list(layers_of(model).items()):
        if not hasattr(layer, "block_mask"):
            continue
        new = (BlockDiagConv2d.from_conv(layer) if isinstance(layer, nn.Conv2d)
               else BlockDiagLinear.from_linear(layer))
        set_module(model, name, new)
        done[name] = new
    if fuse:
        fuse_permutations_(model)
    return done


