"""The entry points: ``compress_(model, recipe)`` and one per method with the same
shape, ``prune_`` / ``share_weights_`` / ``mpd_`` / ``permute_`` ``(model, config, *,
options)``, each returning a ``CompressionReport``.

``compress_`` checks the whole recipe against the model first (``check_recipe``), then
runs each step through its registered handler (looked up by the config's type), then
bakes the constraints (``bake=True``). A per-method entry is ``compress_`` with one step
and ``bake=False``: the constraints stay in force, so training afterwards
(``compactnn.train.fit``) keeps masks and shared values.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

from torch import nn

from compactnn.train import device_of, evaluate
from compactnn.train.data import Data
from compactnn.train.device import check_autocast
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.plan import check_recipe
from compactnn.transforms.prune import bake_, layers_of
from compactnn.transforms.recipe import Recipe, Step
from compactnn.transforms.registry import Run, step_type
from compactnn.transforms.report import CompressionReport, layer_report
from compactnn.transforms.steps import MPD, FineTune, Permute, Prune, Sharing

__all__ = ["compress_", "prune_", "share_weights_", "mpd_", "permute_"]


def compress_(model: nn.Module, recipe: Recipe | Sequence | str | os.PathLike,
              train_data: Data | None = None, val_data: Data | None = None,
              *, bake: bool = True, progress: bool = False, device=None,
              autocast: str | None = None, num_workers: int = 0) -> CompressionReport:
    """Apply a compression recipe to ``model`` in place.

    Args:
        model: any ``nn.Module``; its ``nn.Linear``/``nn.Conv2d`` weights are compressed.
        recipe: a ``Recipe``, a list of steps (dicts, configs or ``Step`` s) or the
            path of a YAML/JSON recipe file.
        train_data: used by fine-tuning (``finetune`` steps, iterative pruning) and
            calibration: a ``TensorDataset``, ``Dataset``, ``IterableDataset`` or
            ``DataLoader`` of ``(input, target)`` samples (``compactnn.train.data``).
        val_data: if given, evaluated after every step (``report.history``).
        bake: make the constraints permanent at the end (plain weights that obey them);
            with ``bake=False`` the layers keep their parametrizations, so further
            ``compactnn.train.fit`` calls keep masks and shared values.
        progress: show tqdm bars while fine-tuning and calibrating.
        device: where fine-tuning, calibration forward passes and GPTQ / SparseGPT
            solves run (``"cuda"``, ``"cpu"``; ``None``: where the model is). The model
            is moved there for each of them and back, so it ends where it started.
        autocast: ``"bf16"`` / ``"fp16"``: those forward passes under ``torch.autocast``
            (moments still accumulate in float64).
        num_workers: ``DataLoader`` workers for fine-tuning and evaluating data that
            is not tensors (``compactnn.train.fit``).

    Returns:
        A ``CompressionReport`` of the layers the recipe masked, permuted, pruned or
        weight-shared.

    >>> import torch
    >>> from compactnn import zoo
    >>> torch.manual_seed(0) and None
    >>> model = zoo.build("lenet300", in_features=64)
    >>> report = compress_(model, [{"method": "prune", "p": 90}, {"method": "cws", "k": 4}])
    >>> [(round(s.sparsity, 2), s.distinct) for s in report.layers]
    [(0.9, 5), (0.9, 5), (0.9, 5)]
    """
    plan = check_recipe(recipe, model, train_data)
    try:  # an unknown device or precision, CUDA without a GPU: before any work
        device_of(model, device)
        check_autocast(autocast)
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    order = list(layers_of(model))
    run = Run(model, train_data, progress, device, autocast, num_workers,
              _teacher(model) if any(_distills(step.config) for step, _ in plan) else None)
    touched: list[str] = []
    history = []
    for i, (step, names) in enumerate(plan):
        kind = step_type(step.config)
        kind.handler(run, step, names)
        touched += [n for n in names if n not in touched]
        if val_data is not None:
            history.append((f"step {i} {kind.describe(step.config)}",
                            evaluate(model, val_data, device=device, autocast=autocast,
                                     num_workers=num_workers)))
    if bake:
        bake_(model)
    touched.sort(key=order.index)
    report = layer_report(model, touched)
    return CompressionReport(report.layers, tuple(history))


def _distills(config) -> bool:
    """Whether a step's fine-tuning (its own, or a ``prune`` step's) distills."""
    return any(isinstance(c, FineTune) and c.distill > 0
               for c in (config, getattr(config, "finetune", None)))


def _teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` as it is now (the distillation teacher)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


_LAYER_LEVEL = {"prune_": "prune_layers_(layers, p)",
                "share_weights_": "share_layers_(layers, quantizer)"}


def _one_step(entry: str, kinds: type | tuple[type, ...], model: nn.Module, config,
              layers: Sequence[str] | None, train_data, val_data, bake: bool,
              progress: bool) -> CompressionReport:
    if not isinstance(model, nn.Module):
        hint = _LAYER_LEVEL.get(entry)
        raise RecipeError(f"{entry}(model, config) takes an nn.Module, got "
                          f"{type(model).__name__}" + (f"; for a dict of layers use {hint}"
                                                       if hint else ""))
    if not isinstance(config, kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise RecipeError(f"{entry} takes a {names} config, got {config!r}")
    step = Step(config, None if layers is None else tuple(layers))
    return compress_(model, [step], train_data, val_data, bake=bake, progress=progress)


def prune_(model: nn.Module, config: Prune, *, layers: Sequence[str] | None = None,
           train_data: Data | None = None, val_data: Data | None = None,
           bake: bool = False, progress: bool = False) -> CompressionReport:
    """Prune ``model`` 's layers (all, or the names / patterns ``layers``) as ``config``
    says; ``train_data`` for iterative or data-aware pruning. Layer dicts:
    ``prune_layers_``.

    >>> net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    >>> prune_(net, Prune(p=50)).sparsity
    0.5
    """
    return _one_step("prune_", Prune, model, config, layers, train_data, val_data, bake,
                     progress)


def share_weights_(model: nn.Module, config: Sharing, *, layers: Sequence[str] | None = None,
                   train_data: Data | None = None,
                   val_data: Data | None = None, bake: bool = False,
                   progress: bool = False) -> CompressionReport:
    """Share the weights of ``model`` 's layers (all, or ``layers``) with a ``CWS``,
    ``PWS``, ``UQ`` or ``ECSQ`` config; ``train_data`` when it calibrates. Layer dicts
    and any quantizer function: ``share_layers_``.

    >>> from compactnn.transforms import CWS
    >>> net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    >>> [s.distinct for s in share_weights_(net, CWS(k=3)).layers]
    [3, 3]
    """
    return _one_step("share_weights_", Sharing, model, config, layers, train_data, val_data,
                     bake, progress)


def mpd_(model: nn.Module, config: MPD, *, layers: Sequence[str] | None = None,
         train_data: Data | None = None, val_data: Data | None = None,
         bake: bool = False, progress: bool = False) -> CompressionReport:
    """Block-mask ``model`` 's layers (all, or ``layers``) as ``config`` says; train (or
    fine-tune) afterwards with ``compactnn.train.fit``: the masks stay in force.

    >>> from compactnn.transforms import MPD
    >>> net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    >>> report = mpd_(net, MPD(blocks=2))
    >>> round(net[0].block_mask.density, 2), int((net[0].weight != 0).sum())
    (0.5, 24)
    """
    return _one_step("mpd_", MPD, model, config, layers, train_data, val_data, bake, progress)


def permute_(model: nn.Module, config: Permute, *,
             layers: Sequence[str] | None = None, train_data: Data | None = None,
             val_data: Data | None = None, bake: bool = False,
             progress: bool = False) -> CompressionReport:
    """Replace ``model`` 's ``nn.Linear`` layers (all but the last with ``last_dense``,
    or ``layers``) by ``PermutedLinear`` layers; fine-tune afterwards with
    ``compactnn.train.fit``.

    >>> from compactnn.transforms import Permute
    >>> net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    >>> [s.name for s in permute_(net, Permute(groups=1, kind="seeded")).layers]
    ['0']
    """
    return _one_step("permute_", Permute, model, config, layers, train_data, val_data, bake,
                     progress)
