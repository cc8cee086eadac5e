"""The ``prune`` step: magnitude, Wanda or SparseGPT pruning, unstructured or N:M, in
one shot or along a schedule with fine-tuning between the stages.

Override semantics: only ``p`` can be overridden; an overridden layer is pruned on its
own (per layer, outside a global pool) and its schedule is the step's schedule scaled
by ``p_layer / p``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from compactnn import _validate as v
from compactnn.transforms import parallel
from compactnn.transforms.calibrate import moments_source, sibling_groups
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.hessian import (
    CRITERIA,
    parse_pattern,
    prune_apply_,
    prune_solve,
    rows_independent,
)
from compactnn.transforms.plan import check_calibration
from compactnn.transforms.prune import prune_layers_
from compactnn.transforms.recipe import Step, build_config, config_fields
from compactnn.transforms.registry import Plan, Run, register_step
from compactnn.transforms.steps.finetune import FineTune, finetune

__all__ = ["Prune"]


def _percent(name: str, value: Any) -> None:
    v.number(name, value, 0, 100, hi_open=True, kind="a percentage", error=RecipeError)


@dataclass(frozen=True)
class Prune:
    """Pruning of ``p`` percent of the weights, per ``"layer"`` or ``"global"``.

    ``criterion``: ``"magnitude"`` (smallest ``|w|``), ``"wanda"`` (smallest ``|w|``
    times the RMS of its input, per output row) or ``"sparsegpt"`` (Optimal Brain
    Surgeon masks and weight updates); the last two measure each layer's input second
    moments on ``calibrate`` training samples with damping ``damp``
    (``compactnn.transforms.hessian``) and prune per layer. ``pattern: "N:M"`` keeps
    at most N non-zeros in every M consecutive inputs of a row (``"2:4"``); ``p`` is
    then implied (``100 (M - N) / M``) and may be omitted.

    ``schedule`` (increasing sparsities below ``p``) makes it iterative: prune to each
    value in turn, then to ``p``, fine-tuning with ``finetune`` between steps.
    """

    p: float | None = None
    scope: str = "layer"
    schedule: tuple[float, ...] = ()
    finetune: FineTune = field(default_factory=FineTune)
    criterion: str = "magnitude"
    pattern: str | None = None
    calibrate: int = 1024
    damp: float = 0.1
    method: ClassVar[str] = "prune"

    def __post_init__(self) -> None:
        v.choice("prune criterion", self.criterion, CRITERIA, error=RecipeError)
        if self.pattern is not None:
            try:
                n, m = parse_pattern(self.pattern)
            except ValueError as e:
                raise RecipeError(f"prune {e}") from None
            implied = 100 * (m - n) / m
            if self.p is None:
                object.__setattr__(self, "p", implied)
            elif self.p != implied:
                raise RecipeError(f"prune pattern {self.pattern!r} prunes {implied:g}% of the "
                                  f"weights; p={self.p!r} contradicts it (omit p)")
            if self.schedule:
                raise RecipeError("prune with a pattern is one step: no schedule")
        if self.p is None:
            raise RecipeError("prune is missing p (a percentage) or a pattern such as '2:4'")
        _percent("prune p", self.p)
        v.choice("prune scope", self.scope, ("layer", "global"), error=RecipeError)
        if self.scope == "global" and (self.criterion != "magnitude" or self.pattern):
            raise RecipeError("prune scope 'global' is for unstructured magnitude pruning; "
                              f"criterion {self.criterion!r}"
                              f"{f' with pattern {self.pattern!r}' if self.pattern else ''} "
                              "prunes per layer (scope: layer)")
        v.integer("prune calibrate", self.calibrate, 1, error=RecipeError)
        v.positive("prune damp", self.damp, error=RecipeError)
        sched = tuple(self.schedule)
        for s in sched:
            _percent("prune schedule entries", s)
        if any(b <= a for a, b in zip(sched, sched[1:], strict=False)) or (
                sched and sched[-1] > self.p):
            raise RecipeError(f"prune schedule must increase and stay <= p={self.p}, "
                              f"got {list(sched)}")
        object.__setattr__(self, "schedule", sched)
        if isinstance(self.finetune, Mapping):
            object.__setattr__(self, "finetune", build_config(FineTune, dict(self.finetune)))
        if not isinstance(self.finetune, FineTune):
            raise RecipeError(f"prune finetune must be a FineTune config, got {self.finetune!r}")

    @property
    def data_aware(self) -> bool:
        """Whether the criterion needs calibration inputs (``wanda``, ``sparsegpt``)."""
        return self.criterion != "magnitude"

    def steps(self, p: float | None = None) -> list[float]:
        """The sparsities applied in turn, scaled to end at ``p`` (default: ``self.p``)."""
        seq = list(self.schedule)
        if not seq or seq[-1] != self.p:
            seq.append(self.p)
        if p is None or p == self.p:
            return seq
        return [s * p / self.p for s in seq] if self.p else [p] * len(seq)


def _override(config: Prune, name: str, fields: dict[str, Any]) -> Prune:
    """Layer ``name``'s own ``p``: the step's schedule scaled to end there (``p: 0``: the
    step leaves the layer alone)."""
    if "p" in fields:
        _percent(f"prune p of layer {name!r}", fields["p"])
        fields = {**fields, "schedule": config.steps(fields["p"])[:-1] if fields["p"] else ()}
    return build_config(Prune, {**config_fields(config), **fields})


def _left_alone(step: Step) -> set[str]:
    """The layers a layer override ``p: 0`` leaves out of the step."""
    return {n for n, own in step.overrides if not own.p}


def _needs_data(step: Step) -> str | None:
    cfg: Prune = step.config
    if len(cfg.steps()) > 1 and cfg.finetune.epochs > 0:
        return "fine-tunes"
    if cfg.data_aware:
        return f"measures layer inputs (criterion {cfg.criterion})"
    return None


def _check(plan: Plan, i: int, step: Step, chosen: list[str]) -> None:
    cfg: Prune = step.config
    for name, own in step.overrides:
        if own.p and len(own.steps()) != len(cfg.steps()):
            raise RecipeError(f"override for layer {name!r}: its pruning schedule must "
                              "have as many steps as the step's own")
    if cfg.data_aware:
        check_calibration(plan, i, step, chosen)
    left = _left_alone(step)
    late = [n for n in chosen if n in plan.shared and n not in left]
    if late:
        raise RecipeError(f"step {i}: prune after weight sharing on {', '.join(late)}; "
                          "prune first, then share weights")
    plan.constrained.update(n for n in chosen if n not in left)


def _run(run: Run, step: Step, names: list[str]) -> None:
    cfg: Prune = step.config
    layers = run.layers
    left = _left_alone(step)
    names = [n for n in names if n not in left]
    own = {n: c for n, c in step.overrides if n not in left}
    pooled = [n for n in names if n not in own]
    seqs = {n: step.config_for(n).steps() for n in names}
    by_layer = cfg.data_aware or cfg.pattern is not None
    for i in range(len(cfg.steps())):
        if by_layer:
            _prune_each(cfg, {n: seqs[n][i] for n in names}, run)
        elif cfg.scope == "global" and pooled:
            prune_layers_({n: layers[n] for n in pooled}, cfg.steps()[i], "global")
        per_layer = [] if by_layer else (names if cfg.scope == "layer" else list(own))
        if per_layer:
            prune_layers_({n: layers[n] for n in per_layer}, {n: seqs[n][i] for n in per_layer})
        if i < len(cfg.steps()) - 1 and cfg.finetune.epochs > 0:
            finetune(cfg.finetune, run)


def _prune_each(cfg: Prune, ps: Mapping[str, float], run: Run) -> None:
    """Prune the layers ``ps`` names in module order (each to its own percentage) by
    ``cfg.criterion`` / ``cfg.pattern``; data-aware criteria measure each layer's inputs
    after the layers before it were pruned. Independent solves (every layer when
    data-free, ``same_input`` siblings otherwise) run as ``transforms.parallel`` tasks."""
    layers = run.layers
    pattern = parse_pattern(cfg.pattern) if cfg.pattern is not None else None
    par = parallel.current()
    bar = tqdm(total=len(ps), desc=f"prune: {cfg.criterion}", unit="layer",
               disable=not (run.progress and cfg.data_aware))
    with bar:
        moments = (moments_source(run.model, layers, run.train_data, cfg.calibrate,
                                  bar.update, device=run.device, autocast=run.autocast)
                   if cfg.data_aware else None)
        order = sorted(ps, key=list(layers).index)
        for group, hs in sibling_groups(order, moments):
            pieces = [(n, h, r) for n, h in zip(group, hs, strict=True)
                      for r in _row_pieces(cfg, pattern, layers[n], len(group), par.size)]
            tasks = [(_cost(cfg, layers[n]) * (1 if r is None else (r[1] - r[0])
                                                / layers[n].weight.shape[0]),
                      functools.partial(prune_solve, layers[n], ps[n], cfg.criterion, pattern,
                                        h, cfg.damp, device=run.device, rows=r))
                     for n, h, r in pieces]
            solved: dict[str, list] = {}
            for (n, _, _), result in zip(pieces, par.map(tasks), strict=True):
                solved.setdefault(n, []).append(result)
            for n in group:  # row pieces have no new weights: Wanda and magnitude keep them
                keep, new = solved[n][0] if len(solved[n]) == 1 else (
                    torch.cat([k for k, _ in solved[n]]), None)
                prune_apply_(layers[n], keep, new)


def _row_pieces(cfg: Prune, pattern: tuple[int, int] | None, layer, siblings: int,
                ranks: int) -> list[tuple[int, int] | None]:
    """The row ranges a layer's solve is split into: one piece per rank when there are
    fewer sibling layers than ranks and the criterion prunes rows independently (the
    masks are the same), else the whole layer (``None``)."""
    rows = layer.weight.shape[0]
    if ranks == 1 or siblings >= ranks or rows < ranks \
            or not rows_independent(cfg.criterion, pattern):
        return [None]
    cut = [rows * r // ranks for r in range(ranks + 1)]
    return list(zip(cut[:-1], cut[1:], strict=True))


def _cost(cfg: Prune, layer) -> float:
    """Relative work of one layer's solve (SparseGPT: rows x in², else the weights)."""
    w = layer.weight
    rows, cols = w.shape[0], w[0].numel()
    return float(rows * cols * (cols if cfg.criterion == "sparsegpt" else 1))


def _describe(c: Prune) -> str:
    how = "" if c.criterion == "magnitude" else f" {c.criterion}"
    return f"prune p={c.p:g}{f' {c.pattern}' if c.pattern else ''} {c.scope}{how}"


register_step(Prune, handler=_run, check=_check, describe=_describe, needs_data=_needs_data,
              overridable={"p"}, override=_override)
