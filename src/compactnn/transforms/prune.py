"""Magnitude pruning as a mask reparametrization, and the helpers every transform shares.

A pruned layer's ``weight`` is ``torch.where(mask, original, 0)`` (``Masked``), recomputed
at every forward pass (and again for the backward pass while fine-tuning, not kept:
``compactnn.train.recompute``), so the pruned entries are exactly ``+0.0`` and receive zero
gradient while fine-tuning. ``bake_`` makes the constraint permanent: the layer gets a
plain ``weight`` parameter again (the same ``Parameter`` object, so optimizers keep it).

Which weights go: the ``round(p/100 * n)`` entries of smallest magnitude, ties broken by
position (a stable sort), so a layer ends up with exactly that many zeros. Entries that
are already exactly zero (pruned before, or baked) are always counted as pruned, and
pruning a layer again can only add zeros (masks are intersected).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from compactnn.train.recompute import rebuildable
from compactnn.transforms.errors import RecipeError

__all__ = ["Constraint", "Masked", "layers_of", "kind_of", "magnitude_masks",
           "prune_layers_", "bake_", "constraint_of"]


class Constraint(nn.Module):
    """Base class of compactnn's weight parametrizations (the ones ``bake_`` removes)."""


class Masked(Constraint):
    """Parametrization ``W -> where(mask, W, 0)``: pruned entries are +0.0, no gradient."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        zero, mask, source = torch.zeros((), dtype=W.dtype), self.mask, W.detach()
        return rebuildable(torch.where(mask, W, zero), lambda: torch.where(mask, source, zero),
                           source)


def layers_of(model: nn.Module) -> dict[str, nn.Module]:
    """The compressible layers of ``model`` (``nn.Linear`` and ``nn.Conv2d``) by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def kind_of(layer: nn.Module) -> str:
    """``"linear"`` or ``"conv"``: layers of one kind can share one codebook."""
    return "conv" if isinstance(layer, nn.Conv2d) else "linear"


def constraint_of(layer: nn.Module) -> Constraint | None:
    """The compactnn constraint on ``layer.weight`` (``Masked``/``SharedWeights``), or
    None when the weight is a plain parameter. Other parametrizations raise RecipeError."""
    if not parametrize.is_parametrized(layer, "weight"):
        return None
    plist = layer.parametrizations.weight
    if len(plist) != 1 or not isinstance(plist[0], Constraint):
        raise RecipeError(f"{type(layer).__name__}.weight carries parametrizations compactnn "
                         f"did not add ({', '.join(type(q).__name__ for q in plist)}); "
                         "bake or remove them first")
    return plist[0]


def _smallest(mag: np.ndarray, count: int) -> np.ndarray:
    """Boolean array marking the ``count`` smallest entries of ``mag`` (ties: the
    earlier entries), the entries a stable sort puts first; by a selection in O(n) with
    one copy of ``mag`` (a sort would need its int64 order and take O(n log n))."""
    out = np.zeros(mag.size, bool)
    if count <= 0:
        return out
    if count >= mag.size:
        out[:] = True
        return out
    cut = np.partition(mag, count - 1)[count - 1]  # the count-th smallest value
    np.less(mag, cut, out=out)
    ties = np.flatnonzero(mag == cut)[:count - int(out.sum())]
    out[ties] = True
    return out


def _magnitudes(w: torch.Tensor) -> np.ndarray:
    """``|w|`` flat, in a dtype that orders like the weights (float32 / float64)."""
    m = w.detach().abs().reshape(-1)
    return (m if m.dtype in (torch.float32, torch.float64) else m.float()).numpy()


def magnitude_masks(weights: Mapping[str, torch.Tensor], p: float | Mapping[str, float],
                    scope: str = "layer") -> dict[str, torch.Tensor]:
    """Keep-masks that prune ``p`` percent of the weights by magnitude.

    Args:
        weights: name -> weight tensor.
        p: percentage in [0, 100), or one per name (``scope="layer"`` only).
        scope: ``"layer"`` prunes p% of every tensor; ``"global"`` prunes p% of all
            entries together with one magnitude threshold.

    >>> w = {"a": torch.tensor([3., -1., 0.5, 2.]), "b": torch.tensor([0.1, 5.])}
    >>> {k: m.tolist() for k, m in magnitude_masks(w, 50, "global").items()}
    {'a': [True, False, False, True], 'b': [False, True]}
    """
    if scope == "global":
        if isinstance(p, Mapping):
            raise RecipeError("global pruning takes one percentage, not one per layer")
        names = list(weights)
        mags = [_magnitudes(weights[k]).astype(np.float64) for k in names]
        flat = np.concatenate(mags) if names else np.empty(0)
        pruned = _smallest(flat, round(p / 100 * flat.size))
        parts = np.split(pruned, np.cumsum([m.size for m in mags])[:-1])
        keep = {k: ~part for k, part in zip(names, parts, strict=True)}
    elif scope == "layer":
        keep = {}
        for k, w in weights.items():  # one layer's magnitudes at a time
            mag = _magnitudes(w)
            pk = p[k] if isinstance(p, Mapping) else p
            keep[k] = ~_smallest(mag, round(pk / 100 * mag.size))
            del mag
    else:
        raise RecipeError(f"scope must be 'layer' or 'global', got {scope!r}")
    return {k: torch.from_numpy(keep[k].reshape(tuple(weights[k].shape))) for k in weights}


@torch.no_grad()
def prune_layers_(layers: Mapping[str, nn.Module], p: float | Mapping[str, float],
           scope: str = "layer") -> dict[str, torch.Tensor]:
    """Prune ``layers`` in place by magnitude and return their keep-masks.

    A plain layer gets a ``Masked`` parametrization; an already pruned layer gets its
    mask intersected with the new one. Exact zeros count as pruned.
    """
    weights = {}
    for name, layer in layers.items():
        con = constraint_of(layer)
        if con is not None and not isinstance(con, Masked):
            raise RecipeError(f"layer {name!r} is weight-shared; prune before sharing weights")
        weights[name] = layer.weight.detach()
    masks = magnitude_masks(weights, p, scope)
    for name, layer in layers.items():
        mask = masks[name] & (weights[name] != 0)
        con = constraint_of(layer)
        if con is None:
            parametrize.register_parametrization(layer, "weight", Masked(mask))
        else:
            con.mask &= mask
        masks[name] = mask
    return masks


def bake_(model_or_layers: nn.Module | Iterable[nn.Module]) -> None:
    """Make every compactnn constraint permanent: each constrained layer gets a plain
    ``weight`` parameter holding the constrained values (same ``Parameter`` object)."""
    mods = (model_or_layers.modules() if isinstance(model_or_layers, nn.Module)
            else model_or_layers)
    for m in list(mods):
        if parametrize.is_parametrized(m, "weight") and all(
                isinstance(q, Constraint) for q in m.parametrizations.weight):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
