"""The ``SharedWeights`` parametrization, ``weight = codebook[assign]``, and the autograd
function that computes it with little memory.

What a plain ``F.pad(codebook, (1, 0))[(assign + 1).long()]`` costs per weight on
every forward pass: an int8 temporary, an int64 copy of the assignment (8 bytes, which
autograd keeps until the backward pass) and the float32 weight (4 bytes). ``_Gather``
keeps only the weight: it reads the assignment (a buffer in the smallest signed integer
type) tile by tile, widening one tile at a time to int32, saves the buffer itself (no
copy) for the backward pass, and returns the codebook's gradient as a scatter-add
(``index_add_``) of the weight's gradient, tile by tile; the weight is marked as
rebuildable (``compactnn.train.recompute``), so while fine-tuning the layer's product
does not keep it for the backward pass but gathers it again. Same values as the plain
indexing, bit for bit: the weight is the same gather, and both backward passes add each
value's gradients in flat (row-major) order, one after the other, in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from compactnn.train.recompute import rebuildable
from compactnn.transforms.prune import Constraint

__all__ = ["RowScaledWeights", "SharedWeights", "TILE", "index_dtype"]

TILE = 1 << 16
"""Weights per tile: the int32 indices of one tile (256 KiB) exist at a time."""


def index_dtype(k: int) -> torch.dtype:
    """The smallest signed integer type holding ``-1 .. k`` (a codebook of ``k``)."""
    for dtype in (torch.int8, torch.int16, torch.int32):
        if k < torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _tiles(assign: torch.Tensor):
    """``(start, int32 indices + 1)`` per tile of the flat assignment."""
    flat = assign.reshape(-1)
    for a in range(0, flat.numel(), TILE):
        yield a, flat[a:a + TILE].to(torch.int32).add_(1)


def _gather(codebook: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
    table = torch.cat([codebook.new_zeros(1), codebook])
    out = codebook.new_empty(assign.shape)  # not a view: the mark is on the base tensor
    flat = out.view(-1)
    for a, idx in _tiles(assign):
        torch.index_select(table, 0, idx, out=flat[a:a + idx.numel()])
    return out


class _Gather(torch.autograd.Function):
    """``cat([0], codebook)[assign + 1]`` with a scatter-add backward (module docstring)."""

    @staticmethod
    def forward(ctx, codebook: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(assign)
        ctx.k = codebook.numel()
        return _gather(codebook, assign)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (assign,) = ctx.saved_tensors
        flat = grad.reshape(-1)
        book = flat.new_zeros(ctx.k + 1)
        for a, idx in _tiles(assign):
            book.index_add_(0, idx, flat[a:a + idx.numel()])
        return book[1:], None


class SharedWeights(Constraint):
    """Parametrization ``weight = codebook[assign]`` (0 where ``assign == -1``).

    ``codebook`` is a learnable ``nn.Parameter`` (possibly shared by several layers),
    ``assign`` a buffer of the weight's shape in the smallest signed integer type that
    holds ``-1 .. len(codebook)`` (int8 for up to 126 values: 1 byte per weight, not 8).
    The dense weight is not kept: the parametrization's ``original`` is an empty tensor,
    and a forward pass builds the weight without widening the whole assignment
    (module docstring).
    """

    def __init__(self, codebook: nn.Parameter, assign: torch.Tensor) -> None:
        super().__init__()
        self.codebook = codebook
        self.register_buffer("assign", assign.to(index_dtype(codebook.numel())))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        book, assign = self.codebook.detach(), self.assign
        return rebuildable(_Gather.apply(self.codebook, assign),
                           lambda: _gather(book, assign), book)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.new_empty(0)


class _Half(torch.autograd.Function):
    """``x`` rounded to float16 and back (exactly what a float16 store keeps); the
    gradient passes straight through the rounding."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float16).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class RowScaledWeights(SharedWeights):
    """Parametrization ``weight = half(scale)[:, None] * codebook[assign]``: weight sharing
    of the rows after dividing each by its own scale, as the word embeddings of a
    transformer want (their rows' spreads differ by token frequency).

    ``codebook`` and ``scale`` ``(rows,)`` are learnable float32 ``nn.Parameter``s; the
    scales are used rounded to float16 (``half``: 2 bytes a row stored; the gradient
    passes straight through the rounding) and the product is one float32 multiply per
    entry, so the float16 scales, the codebook and the codes rebuild the weight bit for
    bit (``compactnn.zoo.PackedEmbedding``). 2-D weights only.
    """

    def __init__(self, codebook: nn.Parameter, assign: torch.Tensor, scale: nn.Parameter
                 ) -> None:
        if assign.dim() != 2 or scale.shape != assign.shape[:1]:
            raise ValueError(f"scale {tuple(scale.shape)} does not fit a 2-D assignment "
                             f"{tuple(assign.shape)}")
        super().__init__(codebook, assign)
        self.scale = scale

    @property
    def stored_scale(self) -> torch.Tensor:
        """The scales as used and stored: float16."""
        return self.scale.detach().to(torch.float16)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return _Half.apply(self.scale).unsqueeze(1) * _Gather.apply(self.codebook, self.assign)
