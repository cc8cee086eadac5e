"""Fine-tuning that may move weight-sharing assignments: a latent weight per shared layer
and a straight-through estimator (quantization-aware training).

A ``SharedWeights`` layer's assignment is a frozen buffer: fine-tuning moves only the
codebook. ``LatentShared`` replaces it for a while by a float32 *latent* weight ``L``,
initialised to the layer's weight ``codebook[assign]``; the weight is
``codebook[nearest(L)]`` (a ``RowScaledWeights`` table: ``half(scale)[:, None] *
codebook[nearest(L)]``, ``L`` in the unscaled units), so it only ever takes the codebook's
values, while the gradient of the weight reaches ``L`` unchanged (straight through the
rounding) and the codebook as the scatter-add of its weights' gradients (as
``SharedWeights``). Entries assigned ``-1`` (pruned) stay ``0`` and get no gradient.

``nearest``: the codebook is sorted (stably) at every forward pass, since it is learnable
and may reorder, and ``L`` is bucketed against the midpoints of consecutive sorted values;
a latent exactly on a midpoint takes the smaller value (of equal values, the one first in
the codebook). Tile by tile, as ``SharedWeights``: the int32 bucket indices of one tile
exist at a time; the assignment of the pass is kept in the smallest integer type.

**[choice]** ``L = anchor + step * delta``: ``anchor`` is a buffer holding the initial
weight and ``delta`` the learnable ``nn.Parameter`` (zeros at first). Adam's update of
``delta`` is about its learning rate whatever the gradient's scale, so ``L`` moves
``step`` times as fast as the other parameters: ``step`` sets the latent weights' own
learning rate without a second optimizer group, and AdamW's weight decay pulls ``L``
towards its start, not towards 0 (which would drag every weight to the value nearest 0).

:func:`to_latent_` swaps every ``SharedWeights`` of a model to this form (a codebook
shared by several layers stays one ``Parameter``), :func:`from_latent_` back: the same
``SharedWeights`` object, its ``assign`` overwritten in place by the final nearest
assignment, so the model computes exactly what the latent form computed, bit for bit, and
everything downstream (bake, convert, save) sees an ordinary weight-shared layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from compactnn.train.recompute import rebuildable
from compactnn.transforms.prune import Constraint
from compactnn.transforms.shared import (
    TILE,
    RowScaledWeights,
    SharedWeights,
    _Gather,
    _gather,
    _Half,
    index_dtype,
)

__all__ = ["LatentShared", "nearest", "to_latent_", "from_latent_"]


@torch.no_grad()
def nearest(codebook: torch.Tensor, latent: torch.Tensor, pruned_from: torch.Tensor
            ) -> torch.Tensor:
    """The index of the codebook value nearest each entry of ``latent`` (ties: the
    smaller value; of equal values, the first), ``-1`` where ``pruned_from < 0``; in
    ``index_dtype(len(codebook))``, ``latent`` 's shape.

    >>> nearest(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([-0.2, 1.4, -0.25, 9.0]),
    ...         torch.tensor([0, 0, -1, 0])).tolist()
    [0, 2, -1, 2]
    """
    if latent.shape != pruned_from.shape:
        raise ValueError(f"latent {tuple(latent.shape)} and assignment "
                         f"{tuple(pruned_from.shape)} differ in shape")
    k = codebook.numel()
    out = torch.full(latent.shape, -1, dtype=index_dtype(k), device=latent.device)
    if k == 0:
        return out
    order = torch.argsort(codebook, stable=True)
    values = codebook[order]
    mids = (values[:-1] + values[1:]) / 2
    new = torch.ones(k, dtype=torch.bool, device=values.device)
    new[1:] = values[1:] != values[:-1]
    first = torch.where(new, torch.arange(k, device=values.device), 0).cummax(0).values
    order = order[first].to(torch.int32)  # equal values: the first in the codebook
    flat, src, dst = latent.reshape(-1), pruned_from.reshape(-1), out.view(-1)
    for a in range(0, flat.numel(), TILE):
        b = min(a + TILE, flat.numel())
        code = order[torch.bucketize(flat[a:b], mids, out_int32=True)]
        dst[a:b] = torch.where(src[a:b] < 0, -1, code)
    return out


class _StraightGather(torch.autograd.Function):
    """``cat([0], codebook)[assign + 1]``; the codebook's gradient is ``_Gather`` 's
    scatter-add, the latent's the weight's gradient (0 where ``assign == -1``)."""

    @staticmethod
    def forward(ctx, codebook: torch.Tensor, latent: torch.Tensor, assign: torch.Tensor
                ) -> torch.Tensor:
        ctx.save_for_backward(assign)
        ctx.k = codebook.numel()
        return _gather(codebook, assign)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (assign,) = ctx.saved_tensors
        book = _Gather.backward(ctx, grad)[0] if ctx.needs_input_grad[0] else None
        latent = grad.masked_fill(assign < 0, 0) if ctx.needs_input_grad[1] else None
        return book, latent, None


class LatentShared(Constraint):
    """Parametrization ``weight = codebook[nearest(anchor + step * delta)]`` standing in
    for ``shared`` (a ``SharedWeights`` or ``RowScaledWeights``) while fine-tuning
    (module docstring); ``shared`` is kept as a submodule and its ``assign`` marks the
    pruned entries.

    Args:
        shared: the layer's weight-sharing parametrization.
        step: how fast the latent weight moves relative to the optimizer's learning
            rate (> 0).
    """

    def __init__(self, shared: SharedWeights, step: float = 1.0) -> None:
        super().__init__()
        if not step > 0:
            raise ValueError(f"latent step must be > 0, got {step}")
        self.shared = shared
        self.step = float(step)
        with torch.no_grad():
            self.register_buffer("anchor", _gather(shared.codebook.detach(), shared.assign))
        self.delta = nn.Parameter(torch.zeros_like(self.anchor))

    @property
    def latent(self) -> torch.Tensor:
        """The latent weight ``anchor + step * delta`` (in a row-scaled table's unscaled
        units)."""
        return torch.add(self.anchor, self.delta, alpha=self.step)

    def assignment(self) -> torch.Tensor:
        """The nearest assignment of the latent weight now (``-1``: pruned)."""
        return nearest(self.shared.codebook.detach(), self.latent.detach(), self.shared.assign)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        shared, latent = self.shared, self.latent
        assign = nearest(shared.codebook.detach(), latent.detach(), shared.assign)
        unit = _StraightGather.apply(shared.codebook, latent, assign)
        if isinstance(shared, RowScaledWeights):
            return _Half.apply(shared.scale).unsqueeze(1) * unit
        book = shared.codebook.detach()
        return rebuildable(unit, lambda: _gather(book, assign), book)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.new_empty(0)


def _weight_lists(model: nn.Module, kind: tuple[type, ...]):
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            plist = m.parametrizations.weight
            if len(plist) == 1 and type(plist[0]) in kind:
                yield plist


def to_latent_(model: nn.Module, step: float = 1.0) -> list[LatentShared]:
    """Swap every ``SharedWeights`` / ``RowScaledWeights`` parametrization of ``model``
    to a :class:`LatentShared` (in place; the model computes the same weights) and
    return them, in module order. ``step``: :class:`LatentShared`."""
    swapped = []
    for plist in _weight_lists(model, (SharedWeights, RowScaledWeights)):
        plist[0] = LatentShared(plist[0], step)
        swapped.append(plist[0])
    return swapped


@torch.no_grad()
def from_latent_(model: nn.Module) -> int:
    """Swap every :class:`LatentShared` of ``model`` back to the parametrization it
    replaced, with the latent weight's nearest assignment written into its ``assign``
    (in place); returns how many assignments changed."""
    moved = 0
    for plist in list(_weight_lists(model, (LatentShared,))):
        latent = plist[0]
        assign = latent.assignment()
        moved += int((assign != latent.shared.assign).sum())
        latent.shared.assign.copy_(assign)
        plist[0] = latent.shared
    return moved
