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
  layer can be stored in any registered format (``CompactBlocks``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from compactnn import formats
from compactnn.formats.base import CompactMatrix
from compactnn.formats.blockdiag import BlockDiag
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


class CompactBlocks:
    """The blocks of a block-diagonal matrix, each stored in a registered compact format
    (after pruning / weight sharing inside the blocks), with direct products.

    >>> M = BlockDiag.from_dense(np.diag(np.arange(1, 4, dtype=np.float32)))
    >>> C = CompactBlocks(M, "csr")
    >>> C.matvec(np.ones(3, np.float32)).tolist()
    [1.0, 2.0, 3.0]
    """

    def __init__(self, matrix: BlockDiag, format_id: str) -> None:
        if not isinstance(matrix, BlockDiag):
            raise TypeError(f"expected a BlockDiag matrix, got {type(matrix).__name__}")
        self.shape = matrix.shape
        self.layout = matrix.layout()
        self.seed, self.num_blocks = matrix.seed, matrix.blocks
        fmt = formats.get(format_id)
        self.blocks: list[CompactMatrix] = [fmt.from_dense(np.ascontiguousarray(matrix.block(b)))
                                            for b in range(matrix.blocks)]

    @property
    def nbytes(self) -> int:
        """Bytes of every block's arrays plus the layout (none when seeded)."""
        idx = 0
        if self.seed is None:
            rows, cols, rp, cp = self.layout
            m, n = self.shape
            idx = sum(formats.index_dtype(max(hi, 0)).itemsize * a.size
                      for a, hi in ((rows, m - 1), (cols, n - 1), (rp, m), (cp, n)))
        return idx + sum(b.nbytes for b in self.blocks)

    def _apply(self, X: np.ndarray, vec: bool) -> np.ndarray:
        rows, cols, rp, cp = self.layout
        Y = np.zeros((self.shape[0],) + X.shape[1:], np.float32)
        for b, blk in enumerate(self.blocks):
            xb = X[cols[cp[b] : cp[b + 1]]]
            Y[rows[rp[b] : rp[b + 1]]] = blk.matvec(xb) if vec else blk.matmul(xb)
        return Y

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``W @ x`` for x (n,)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != (self.shape[1],):
            raise ValueError(f"matvec expects x of shape ({self.shape[1]},), got {x.shape}")
        return self._apply(x, True)

    def matmul(self, X: np.ndarray) -> np.ndarray:
        """``W @ X`` for X (n, b)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] != self.shape[1]:
            raise ValueError(f"matmul expects X of shape ({self.shape[1]}, b), got {X.shape}")
        return self._apply(X, False)

    def to_dense(self) -> np.ndarray:
        """Decode to a dense float32 (m, n) matrix."""
        rows, cols, rp, cp = self.layout
        out = np.zeros(self.shape, np.float32)
        for b, blk in enumerate(self.blocks):
            out[np.ix_(rows[rp[b] : rp[b + 1]], cols[cp[b] : cp[b + 1]])] = blk.to_dense()
        return out
