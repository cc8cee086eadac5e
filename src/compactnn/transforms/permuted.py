"""Permuted features (Nagaraju & Chandrachoodan, IET CDT 2023) as a transform: trained
``nn.Linear`` layers become ``PermutedLinear`` layers (``compactnn.nn.permuted``), whose
rows are permutations of a few shared base sequences. The recipe step is ``Permute``
(``transforms/steps/permute.py``; ``permute_(model, Permute(...))``); this module holds
the per-layer conversion and the parameter counts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from compactnn.formats.permseq import seeded_groups
from compactnn.nn.permuted import PermutedLinear, sorted_row_groups

__all__ = [
    "PermutedLinear",
    "permuted_layer",
    "parameter_count",
    "projected_parameter_count",
    "sorted_row_groups",
]


def permuted_layer(linear: nn.Linear, groups: int, kind: str, seed: int) -> PermutedLinear:
    """A ``PermutedLinear`` for ``linear``: ``kind="data"``: rank-order permutations of
    its weight (stored; ``seed`` seeds the k-means grouping); ``"seeded"``: seeded
    permutations with base sequences that start as the group means of the sorted rows."""
    if kind == "data":
        return PermutedLinear.from_linear(linear, groups, seed)
    m, n = linear.out_features, linear.in_features
    new = PermutedLinear(n, m, groups, seed, linear.bias is not None,
                         device=linear.weight.device)
    W = linear.weight.detach().to("cpu", torch.float32).numpy()
    _, _, base = sorted_row_groups(W, new.groups, assign=seeded_groups(m, new.groups))
    with torch.no_grad():
        new.base.copy_(torch.from_numpy(base))
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def _linear_layers(model: nn.Module, last_dense: bool) -> list[tuple[str, nn.Linear]]:
    layers = [(n, m) for n, m in model.named_modules() if type(m) is nn.Linear]
    return layers[:-1] if last_dense else layers



def parameter_count(model: nn.Module, count_permutations: bool = False) -> int:
    """Parameters of ``model``. With ``count_permutations``, every ``PermutedLinear``
    with stored (data-derived) permutations also counts its ``m n`` indices and every
    seeded one its seed (1)."""
    total = sum(p.numel() for p in model.parameters())
    if count_permutations:
        for m in model.modules():
            if isinstance(m, PermutedLinear):
                total += 1 if m.seed is not None else m.out_features * m.in_features
    return total


def projected_parameter_count(
    model: nn.Module,
    groups: int | Callable[[str, nn.Linear], int] = 1,
    last_dense: bool = True,
    count_permutations: bool = False,
) -> int:
    """Parameters ``model`` would have after ``permute_`` with ``groups`` sequences per
    layer (an int, or a function of name and layer), from the shapes alone (works on
    ``device="meta"`` models). ``count_permutations`` adds ``m n`` stored indices per
    permuted layer (the data-derived kind)."""
    total = sum(p.numel() for p in model.parameters())
    for name, lin in _linear_layers(model, last_dense):
        m, n = lin.out_features, lin.in_features
        G = min(groups(name, lin) if callable(groups) else groups, m)
        total += G * n - m * n + (m * n if count_permutations else 0)
    return total
