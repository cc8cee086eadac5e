"""The ``permute`` step: ``nn.Linear`` layers become ``PermutedLinear`` layers
(``compactnn.transforms.permuted``).

The step replaces its layers, so they take no later mask, pruning or weight-sharing
step (fine-tuning trains their base sequences); it applies to plain layers only. With
``layers`` unset it takes every ``nn.Linear`` (convolutions are left alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from compactnn import _validate as v
from compactnn.nn.tree import set_module
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.permuted import permuted_layer
from compactnn.transforms.recipe import Step
from compactnn.transforms.registry import Plan, Run, register_step

__all__ = ["Permute"]


@dataclass(frozen=True)
class Permute:
    """Permuted features: ``groups`` base sequences per layer. ``kind``: ``"data"``
    (rank-order permutations of the trained weights, stored) or ``"seeded"`` (seeded
    permutations; the step's ``i``-th layer gets seed ``seed + i`` and its base
    sequences start as the group means of the sorted rows of the current weights, so an
    untrained model keeps the default initialisation's distribution). ``last_dense``
    keeps the model's last ``nn.Linear`` (the classifier) dense."""

    groups: int = 1
    kind: str = "data"
    seed: int = 0
    last_dense: bool = True
    method: ClassVar[str] = "permute"

    def __post_init__(self) -> None:
        v.integer("permute groups", self.groups, 1, error=RecipeError)
        v.choice("permute kind", self.kind, ("data", "seeded"), error=RecipeError)
        v.seed("permute seed", self.seed, error=RecipeError)
        v.flag("permute last_dense", self.last_dense, error=RecipeError)


def _check(plan: Plan, i: int, step: Step, chosen: list[str]) -> list[str]:
    linear = [n for n in chosen if type(plan.layers[n]) is nn.Linear]
    if step.layers is not None and len(linear) < len(chosen):
        other = [n for n in chosen if n not in linear]
        raise RecipeError(f"step {i} (permute): {', '.join(other)} are not nn.Linear layers")
    if step.config.last_dense:
        last = [n for n, m in plan.layers.items() if type(m) is nn.Linear][-1:]
        linear = [n for n in linear if n not in last]
    late = [n for n in linear if n in plan.constrained or n in plan.masked]
    if late:
        raise RecipeError(f"step {i} (permute): {', '.join(late)} are already masked, pruned "
                          "or weight-shared; permute plain layers")
    if not linear:
        raise RecipeError(f"step {i} (permute): no nn.Linear layer to permute"
                          f"{' (last_dense keeps the last one)' if step.config.last_dense else ''}")
    for j, name in enumerate(linear):
        cfg = step.config_for(name)
        if cfg.kind == "seeded":
            v.seed(f"step {i} (permute), layer {name!r}: seed", cfg.seed + j, error=RecipeError)
    plan.names = [n for n in plan.names if n not in linear]  # replaced: no later step
    return linear


def _run(run: Run, step: Step, names: list[str]) -> None:
    for j, name in enumerate(names):
        cfg = step.config_for(name)
        seed = cfg.seed + j if cfg.kind == "seeded" else cfg.seed
        new = permuted_layer(run.model.get_submodule(name), cfg.groups, cfg.kind, seed)
        set_module(run.model, name, new)


def _describe(c: Permute) -> str:
    return f"permute groups={c.groups} {c.kind}"


register_step(Permute, handler=_run, check=_check, describe=_describe,
              overridable={"groups", "kind", "seed"})
