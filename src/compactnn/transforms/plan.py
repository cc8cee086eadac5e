"""``check_recipe``: a recipe checked against a model before any work, and the helpers
the steps' checks share.

Every check raises ``RecipeError``: an unknown method or field, a value out of range, a
layer name that matches nothing, a step that needs ``train_data`` without it, and what
each registered step's ``check`` refuses (pruning after weight sharing, block masks
after pruning or twice on one layer, a block count outside [1, max(out, in)], ...).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from torch import nn

from compactnn.transforms.calibrate import check_calibratable
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.prune import constraint_of, layers_of
from compactnn.transforms.recipe import Recipe, Step, as_recipe
from compactnn.transforms.registry import Plan, step_type
from compactnn.transforms.shared import SharedWeights

__all__ = ["check_recipe", "select", "check_calibration"]


def select(step: Step, names: Sequence[str]) -> list[str]:
    """The layers of ``names`` that ``step.layers`` matches (all when None), in order."""
    if step.layers is None:
        chosen = list(names)
    else:
        chosen = []
        for pat in step.layers:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
            if not hits:
                raise RecipeError(f"{step.method} step: no Linear/Conv2d layer named "
                                  f"{pat!r}; layers: {', '.join(names) or '(none)'}")
            chosen += [n for n in hits if n not in chosen]
        chosen.sort(key=list(names).index)
    _check_overrides(step, chosen)
    return chosen


def _check_overrides(step: Step, chosen: list[str]) -> None:
    for name, _ in step.overrides:
        if name not in chosen:
            raise RecipeError(f"{step.method} step: override for {name!r}, which is "
                              f"not one of the step's layers ({', '.join(chosen) or 'none'})")


def check_calibration(plan: Plan, i: int, step: Step, chosen: Iterable[str]) -> None:
    """``RecipeError`` unless every chosen layer whose config calibrates
    (``calibrate`` > 0) can be calibrated (``calibrate.check_calibratable``)."""
    for name in chosen:
        if step.config_for(name).calibrate:
            try:
                check_calibratable(plan.layers[name])
            except (TypeError, ValueError) as e:
                raise RecipeError(f"step {i} ({step.method}), layer {name!r}: {e}") from None


def _plan(model: nn.Module, train_data) -> Plan:
    layers = layers_of(model)
    plan = Plan(model, layers, list(layers), train_data)
    for name, layer in layers.items():
        try:
            con = constraint_of(layer)
        except ValueError as e:
            raise RecipeError(f"layer {name!r}: {e}") from None
        if isinstance(con, SharedWeights):
            plan.shared.add(name)
        if con is not None:
            plan.constrained.add(name)
        if hasattr(layer, "block_mask"):
            plan.masked.add(name)
    return plan


def check_recipe(recipe: Recipe | Sequence | str, model: nn.Module,
                 train_data=None) -> list[tuple[Step, list[str]]]:
    """Validate ``recipe`` (a ``Recipe``, a list of steps or a recipe file) against
    ``model`` without changing anything; return each step with the names of the layers
    it applies to. Raises ``RecipeError``."""
    recipe = as_recipe(recipe)
    plan = _plan(model, train_data)
    out = []
    for i, step in enumerate(recipe.steps):
        kind = step_type(step.config)
        why = kind.needs_data(step)
        if why and train_data is None:
            raise RecipeError(f"step {i} ({kind.method}) {why}, so compress_ needs train_data")
        chosen = [] if kind.whole_model else select(step, plan.names)
        narrowed = kind.check(plan, i, step, chosen)
        if narrowed is not None:
            chosen = narrowed
            _check_overrides(step, chosen)
        if not kind.whole_model and not chosen:
            raise RecipeError(f"step {i} ({kind.method}): the model has no Linear/Conv2d "
                              "layers")
        out.append((step, chosen))
    return out
