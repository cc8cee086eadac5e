"""Recipes: frozen dataclass configs, parsing from YAML/JSON, ``compress_`` and reports.

A recipe is a list of steps; each step is one config (``MPD``, ``Prune``, ``CWS``,
``PWS``, ``UQ``, ``ECSQ``, ``FineTune``) plus an optional ``layers`` filter (names or
``fnmatch`` patterns of ``nn.Linear``/``nn.Conv2d`` modules; default: all) and optional
per-layer ``overrides`` (field values that differ for one named layer). As data::

    - {method: mpd, blocks: 4, seed: 0, layers: ["1", "3"]}
    - {method: prune, p: 90, scope: global, schedule: [50, 80],
       finetune: {epochs: 1, lr: 0.001}, overrides: {"4": {p: 70}}}
    - {method: finetune, epochs: 2, lr: 0.0003}
    - {method: cws, k: 32, shared: false, layers: ["0", "2"]}
    - {method: uq, k: 4, layers: ["4"], calibrate: 1024}
    - {method: finetune, epochs: 1}

``compress_`` validates the whole recipe against the model before doing any work
(``RecipeError`` on an unknown method or field, p outside [0, 100), k < 1, a layer name
that matches nothing, pruning after weight sharing, block masks (``mpd``) after pruning
or weight sharing or twice on one layer, a block count outside [1, max(out, in)],
fine-tuning without data), then
runs the steps and returns a ``CompressionReport``: per compressed layer its sparsity,
number of distinct values and entropy (``compactnn.coding.entropy_bits`` of the weight
in its ``(out, in*kh*kw)`` view; biases are not included).

``calibrate: n`` on a sharing step (any quantizer) assigns the weights to the codebook
by GPTQ error compensation on the layer inputs of n training samples instead of to the
nearest value (``compactnn.transforms.calibrate``).

Override semantics: for ``prune`` only ``p`` can be overridden; an overridden layer is
pruned on its own (per layer, outside a global pool) and its schedule is the step's
schedule scaled by ``p_layer / p``. For the quantizers any field but ``shared`` can be
overridden; an overridden layer gets its own codebook.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from compactnn.coding import entropy_bits
from compactnn.errors import UserError
from compactnn.train import evaluate, fit
from compactnn.transforms import quantize as q
from compactnn.transforms.calibrate import check_calibratable, input_moments, same_input
from compactnn.transforms.hessian import CRITERIA, parse_pattern, prune_layer_
from compactnn.transforms.mpd import BlockMask, block_mask_, mask_shape
from compactnn.transforms.prune import bake_, constraint_of, kind_of, layers_of, prune_

__all__ = [
    "RecipeError", "FineTune", "MPD", "Prune", "CWS", "PWS", "UQ", "ECSQ", "Step", "Recipe",
    "METHODS", "load_recipe", "check_recipe", "compress_", "LayerStats",
    "CompressionReport", "layer_report",
]


class RecipeError(UserError):
    """A recipe or config is invalid; raised before any work starts."""


def _int(name: str, v: Any, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise RecipeError(f"{name} must be an integer >= {lo}, got {v!r}")


def _choice(name: str, v: Any, options: Sequence[str]) -> None:
    if v not in options:
        raise RecipeError(f"{name} must be one of {', '.join(map(repr, options))}, got {v!r}")


def _percent(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 100:
        raise RecipeError(f"{name} must be a percentage in [0, 100), got {v!r}")


@dataclass(frozen=True)
class FineTune:
    """Constraint-keeping fine-tuning with ``compactnn.train.fit`` (Adam, cosine lr)."""

    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 128
    seed: int = 0
    weight_decay: float = 0.0
    method: ClassVar[str] = "finetune"

    def __post_init__(self) -> None:
        _int("finetune epochs", self.epochs, 0)
        _int("finetune batch_size", self.batch_size, 1)
        _int("finetune seed", self.seed, 0)
        for name, lo_ok in (("lr", False), ("weight_decay", True)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    v > 0 or (lo_ok and v == 0)):
                kind = "non-negative" if lo_ok else "positive"
                raise RecipeError(f"finetune {name} must be a {kind} number, got {v!r}")


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
        _choice("prune criterion", self.criterion, CRITERIA)
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
        _choice("prune scope", self.scope, ("layer", "global"))
        if self.scope == "global" and (self.criterion != "magnitude" or self.pattern):
            raise RecipeError("prune scope 'global' is for unstructured magnitude pruning; "
                              f"criterion {self.criterion!r}"
                              f"{f' with pattern {self.pattern!r}' if self.pattern else ''} "
                              "prunes per layer (scope: layer)")
        _int("prune calibrate", self.calibrate, 1)
        if isinstance(self.damp, bool) or not isinstance(self.damp, (int, float)) or not (
                self.damp > 0):
            raise RecipeError(f"prune damp must be a positive number, got {self.damp!r}")
        sched = tuple(self.schedule)
        for s in sched:
            _percent("prune schedule entries", s)
        if any(b <= a for a, b in zip(sched, sched[1:], strict=False)) or (
                sched and sched[-1] > self.p):
            raise RecipeError(f"prune schedule must increase and stay <= p={self.p}, "
                              f"got {list(sched)}")
        object.__setattr__(self, "schedule", sched)
        if isinstance(self.finetune, Mapping):
            object.__setattr__(self, "finetune", _build(FineTune, dict(self.finetune)))
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


@dataclass(frozen=True)
class _Sharing:
    """Fields of every weight-sharing config: ``k`` values, one codebook per layer or
    ``shared`` by the layers of a kind, and ``calibrate``: if > 0, that many training
    samples (evenly spaced through ``train_data``) give each layer's input second
    moments, and the assignments to the codebook are chosen by GPTQ error compensation
    with damping ``damp`` (``compactnn.transforms.calibrate``) instead of nearest value."""

    k: int
    shared: bool = False
    calibrate: int = 0
    damp: float = 0.1

    def __post_init__(self) -> None:
        _int(f"{self.method} k", self.k, 1)
        if not isinstance(self.shared, bool):
            raise RecipeError(f"{self.method} shared must be true or false, got {self.shared!r}")
        _int(f"{self.method} calibrate", self.calibrate, 0)
        if isinstance(self.damp, bool) or not isinstance(self.damp, (int, float)) or not (
                self.damp > 0):
            raise RecipeError(f"{self.method} damp must be a positive number, got {self.damp!r}")

    def quantizer(self) -> Callable[[np.ndarray], q.Quantized]:
        """The 1-D quantizer this config describes (values -> ``Quantized``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class CWS(_Sharing):
    """k-means weight sharing: ``mode="exact"`` (1-D Lloyd to its fixed point, init
    ``"linear"``/``"quantile"``) or ``"sklearn"`` (init ``"linear"``/``"k-means++"``)."""

    mode: str = "exact"
    init: str = "linear"
    seed: int = 0
    method: ClassVar[str] = "cws"

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("cws mode", self.mode, ("exact", "sklearn"))
        _choice(f"cws init (mode {self.mode})", self.init,
                ("linear", "quantile") if self.mode == "exact" else ("linear", "k-means++"))
        _int("cws seed", self.seed, 0)

    def quantizer(self):
        if self.mode == "exact":
            return functools.partial(q.kmeans_1d, k=self.k, init=self.init)
        return functools.partial(q.kmeans_sklearn, k=self.k, init=self.init, seed=self.seed)


@dataclass(frozen=True)
class PWS(_Sharing):
    """Probabilistic weight sharing: quantile representatives, unbiased seeded rounding."""

    seed: int = 0
    method: ClassVar[str] = "pws"

    def __post_init__(self) -> None:
        super().__post_init__()
        _int("pws seed", self.seed, 0)

    def quantizer(self):
        return functools.partial(q.pws_1d, k=self.k, seed=self.seed)


@dataclass(frozen=True)
class UQ(_Sharing):
    """Uniform quantization with the smallest grid step giving at most k non-zero levels."""

    method: ClassVar[str] = "uq"

    def quantizer(self):
        return functools.partial(q.uq_1d, k=self.k)


@dataclass(frozen=True)
class ECSQ(_Sharing):
    """Entropy-constrained scalar quantization, λ bisected to leave at most k clusters
    out of ``oversample·k`` initial ones."""

    oversample: int = 2
    method: ClassVar[str] = "ecsq"

    def __post_init__(self) -> None:
        super().__post_init__()
        _int("ecsq oversample", self.oversample, 1)

    def quantizer(self):
        return functools.partial(q.ecsq_1d, k=self.k, oversample=self.oversample)


@dataclass(frozen=True)
class MPD:
    """MPDCompress block masks (``compactnn.transforms.mpd.block_mask_``): ``blocks`` N
    seeded blocks per layer; the step's ``i``-th layer (module order) gets seed
    ``seed + i``. ``rescale`` multiplies the weights by about ``sqrt(N)`` (for models
    trained from scratch after masking). Masks come before pruning and weight sharing on
    the same layers; fine-tuning keeps them, and the masked layers convert to the
    ``blockdiag`` format (``compactnn.to_compact``)."""

    blocks: int
    seed: int = 0
    rescale: bool = False
    method: ClassVar[str] = "mpd"

    def __post_init__(self) -> None:
        _int("mpd blocks", self.blocks, 1)
        _int("mpd seed", self.seed, 0)
        if not isinstance(self.rescale, bool):
            raise RecipeError(f"mpd rescale must be true or false, got {self.rescale!r}")


Config = MPD | Prune | CWS | PWS | UQ | ECSQ | FineTune
METHODS: dict[str, type] = {c.method: c for c in (MPD, Prune, CWS, PWS, UQ, ECSQ, FineTune)}


def _build(cls: type, fields: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise RecipeError(f"unknown field(s) {', '.join(unknown)} for method {cls.method!r}; "
                          f"allowed: {', '.join(sorted(names))}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        return cls(**fields)
    except TypeError as e:  # a required field is missing
        raise RecipeError(f"method {cls.method!r}: {e}") from None


@dataclass(frozen=True)
class Step:
    """One recipe step: a config, an optional layer filter and per-layer overrides
    (``overrides`` holds ``(layer name, full config for that layer)`` pairs)."""

    config: Config
    layers: tuple[str, ...] | None = None
    overrides: tuple[tuple[str, Config], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.config, tuple(METHODS.values())):
            raise RecipeError(f"a step's config must be one of {', '.join(METHODS)}, "
                              f"got {type(self.config).__name__}")
        if self.layers is not None:
            if isinstance(self.layers, str) or not all(isinstance(s, str) for s in self.layers):
                raise RecipeError(f"layers must be a list of layer names, got {self.layers!r}")
            object.__setattr__(self, "layers", tuple(self.layers))
        if isinstance(self.config, FineTune) and (self.layers is not None or self.overrides):
            raise RecipeError("finetune steps train the whole model: no layers or overrides")
        for name, cfg in self.overrides:
            if type(cfg) is not type(self.config):
                raise RecipeError(f"override for layer {name!r} must be a "
                                  f"{type(self.config).__name__} config")
            if isinstance(cfg, Prune) and len(cfg.steps()) != len(self.config.steps()):
                raise RecipeError(f"override for layer {name!r}: its pruning schedule must "
                                  "have as many steps as the step's own")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        """Parse ``{method: ..., <config fields>, layers: [...], overrides: {...}}``."""
        if not isinstance(d, Mapping):
            raise RecipeError(f"a recipe step must be a mapping, got {d!r}")
        d = dict(d)
        method = d.pop("method", None)
        if method not in METHODS:
            raise RecipeError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        ctype = METHODS[method]
        layers = d.pop("layers", None)
        overrides = d.pop("overrides", None) or {}
        config = _build(ctype, d)
        if not isinstance(overrides, Mapping):
            raise RecipeError(f"overrides must map layer names to fields, got {overrides!r}")
        allowed = ({"p"} if ctype is Prune
                   else {f.name for f in dataclasses.fields(ctype)} - {"shared"})
        pairs = []
        for name, fields in overrides.items():
            if not isinstance(fields, Mapping):
                raise RecipeError(f"override for layer {name!r} must be a mapping of fields")
            bad = sorted(set(fields) - allowed)
            if bad:
                raise RecipeError(f"cannot override {', '.join(bad)} for layer {name!r} in a "
                                  f"{method} step; allowed: {', '.join(sorted(allowed))}")
            if ctype is Prune and "p" in fields:
                _percent(f"prune p of layer {name!r}", fields["p"])
                fields = {**fields, "schedule": config.steps(fields["p"])[:-1]}
            pairs.append((str(name), _build(ctype, {**_fields(config), **fields})))
        return cls(config, layers, tuple(pairs))

    def to_dict(self) -> dict[str, Any]:
        """The inverse of ``from_dict`` (JSON-serialisable)."""
        base = _fields(self.config)
        out: dict[str, Any] = {"method": self.config.method, **base}
        if self.layers is not None:
            out["layers"] = list(self.layers)
        if self.overrides:
            out["overrides"] = {
                n: {"p": c.p} if isinstance(c, Prune)
                else {k: v for k, v in _fields(c).items() if base[k] != v}
                for n, c in self.overrides}
        return out


def _fields(config) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = _fields(v) if dataclasses.is_dataclass(v) else (
            list(v) if isinstance(v, tuple) else v)
    return out


@dataclass(frozen=True)
class Recipe:
    """An ordered list of steps; build it with ``Recipe.from_list`` or ``load_recipe``."""

    steps: tuple[Step, ...]

    @classmethod
    def from_list(cls, steps: Iterable[Step | Config | Mapping[str, Any]]) -> Recipe:
        """Steps may be ``Step`` s, bare configs (all layers) or dicts."""
        if isinstance(steps, (str, bytes, Mapping)):
            raise RecipeError("a recipe must be a list of steps")
        out = []
        for s in steps:
            if isinstance(s, Step):
                out.append(s)
            elif isinstance(s, Mapping):
                out.append(Step.from_dict(s))
            else:
                out.append(Step(s))
        return cls(tuple(out))

    def to_list(self) -> list[dict[str, Any]]:
        """JSON/YAML-ready list of step dicts."""
        return [s.to_dict() for s in self.steps]


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read a recipe from ``.json``, ``.yaml`` or ``.yml``: a list of steps, or a mapping
    with a ``steps`` list."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} not found")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        raise RecipeError(f"recipe files must end in .json, .yaml or .yml, got {path.name}")
    if isinstance(data, Mapping):
        data = data.get("steps")
    if not isinstance(data, list):
        raise RecipeError(f"{path}: expected a list of steps (or a mapping with 'steps')")
    return Recipe.from_list(data)


def _as_recipe(recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe)
    return Recipe.from_list(recipe)


def _select(step: Step, names: Sequence[str]) -> list[str]:
    if step.layers is None:
        chosen = list(names)
    else:
        chosen = []
        for pat in step.layers:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
            if not hits:
                raise RecipeError(f"{step.config.method} step: no Linear/Conv2d layer named "
                                  f"{pat!r}; layers: {', '.join(names) or '(none)'}")
            chosen += [n for n in hits if n not in chosen]
        chosen.sort(key=names.index)
    for name, _ in step.overrides:
        if name not in chosen:
            raise RecipeError(f"{step.config.method} step: override for {name!r}, which is "
                              f"not one of the step's layers ({', '.join(chosen) or 'none'})")
    return chosen


def check_recipe(recipe, model: nn.Module,
                 train_data: TensorDataset | None = None) -> list[tuple[Step, list[str]]]:
    """Validate ``recipe`` against ``model`` without changing anything; return each step
    with the names of the layers it applies to. Raises ``RecipeError``."""
    recipe = _as_recipe(recipe)
    layers = layers_of(model)
    names = list(layers)
    shared, constrained, masked = set(), set(), set()
    for name, layer in layers.items():
        try:
            con = constraint_of(layer)
        except ValueError as e:
            raise RecipeError(f"layer {name!r}: {e}") from None
        if isinstance(con, q.SharedWeights):
            shared.add(name)
        if con is not None:
            constrained.add(name)
        if hasattr(layer, "block_mask"):
            masked.add(name)
    plan = []
    for i, step in enumerate(recipe.steps):
        cfg = step.config
        needs_data = isinstance(cfg, FineTune) or (
            isinstance(cfg, Prune) and len(cfg.steps()) > 1 and cfg.finetune.epochs > 0)
        if needs_data and train_data is None:
            raise RecipeError(f"step {i} ({cfg.method}) fine-tunes, so compress_ needs train_data")
        if isinstance(cfg, _Sharing) and train_data is None and any(
                c.calibrate for c in (cfg, *(c for _, c in step.overrides))):
            raise RecipeError(f"step {i} ({cfg.method}) calibrates, so compress_ needs "
                              "train_data")
        if isinstance(cfg, Prune) and cfg.data_aware and train_data is None:
            raise RecipeError(f"step {i} (prune, criterion {cfg.criterion}) measures layer "
                              "inputs, so compress_ needs train_data")
        chosen = [] if isinstance(cfg, FineTune) else _select(step, names)
        if isinstance(cfg, _Sharing) or (isinstance(cfg, Prune) and cfg.data_aware):
            _check_calibration(i, step, chosen, layers)
        if not isinstance(cfg, FineTune) and not chosen:
            raise RecipeError(f"step {i} ({cfg.method}): the model has no Linear/Conv2d layers")
        if isinstance(cfg, MPD):
            _check_mpd(i, step, chosen, layers, constrained, masked)
            masked.update(chosen)
        elif isinstance(cfg, Prune):
            late = [n for n in chosen if n in shared]
            if late:
                raise RecipeError(f"step {i}: prune after weight sharing on {', '.join(late)}; "
                                  "prune first, then share weights")
        elif not isinstance(cfg, FineTune):
            shared.update(chosen)
        constrained.update(chosen)
        plan.append((step, chosen))
    return plan


def _check_calibration(i: int, step: Step, chosen: list[str],
                       layers: Mapping[str, nn.Module]) -> None:
    own = dict(step.overrides)
    for name in chosen:
        if own.get(name, step.config).calibrate:  # Prune: only called when data-aware
            try:
                check_calibratable(layers[name])
            except (TypeError, ValueError) as e:
                raise RecipeError(f"step {i} ({step.config.method}), layer {name!r}: "
                                  f"{e}") from None


def _check_mpd(i: int, step: Step, chosen: list[str], layers: Mapping[str, nn.Module],
               constrained: set[str], masked: set[str]) -> None:
    twice = [n for n in chosen if n in masked]
    if twice:
        raise RecipeError(f"step {i} (mpd): {', '.join(twice)} already carry a block mask")
    late = [n for n in chosen if n in constrained]
    if late:
        raise RecipeError(f"step {i}: mpd after pruning or weight sharing on "
                          f"{', '.join(late)}; apply block masks first")
    own = dict(step.overrides)
    for j, name in enumerate(chosen):
        cfg = own.get(name, step.config)
        try:
            BlockMask(mask_shape(layers[name]), cfg.blocks, cfg.seed + j)
        except (TypeError, ValueError) as e:
            raise RecipeError(f"step {i} (mpd), layer {name!r}: {e}") from None


def _run_mpd(step: Step, layers: Mapping[str, nn.Module], names: list[str]) -> None:
    own = dict(step.overrides)
    for j, name in enumerate(names):
        cfg = own.get(name, step.config)
        block_mask_(layers[name], cfg.blocks, cfg.seed + j, cfg.rescale)


def _run_prune(step: Step, layers: Mapping[str, nn.Module], names: list[str], model: nn.Module,
               train_data, progress: bool) -> None:
    cfg: Prune = step.config
    own = dict(step.overrides)
    pooled = [n for n in names if n not in own]
    seqs = {n: (own[n] if n in own else cfg).steps() for n in names}
    for i in range(len(cfg.steps())):
        if cfg.data_aware or cfg.pattern is not None:
            _prune_layers(cfg, {n: seqs[n][i] for n in names}, model, layers, train_data,
                          progress)
        elif cfg.scope == "global" and pooled:
            prune_({n: layers[n] for n in pooled}, cfg.steps()[i], "global")
        per_layer = [] if cfg.data_aware or cfg.pattern is not None else (
            names if cfg.scope == "layer" else list(own))
        if per_layer:
            prune_({n: layers[n] for n in per_layer}, {n: seqs[n][i] for n in per_layer})
        if i < len(cfg.steps()) - 1 and cfg.finetune.epochs > 0:
            _run_finetune(cfg.finetune, model, train_data, progress)


def _prune_layers(cfg: Prune, ps: Mapping[str, float], model: nn.Module,
                  layers: Mapping[str, nn.Module], train_data, progress: bool) -> None:
    """Prune the layers ``ps`` names one by one in module order (each to its own
    percentage) by ``cfg.criterion`` / ``cfg.pattern``; data-aware criteria measure each
    layer's inputs after the layers before it were pruned."""
    pattern = parse_pattern(cfg.pattern) if cfg.pattern is not None else None
    bar = tqdm(total=len(ps), desc=f"prune: {cfg.criterion}", unit="layer",
               disable=not (progress and cfg.data_aware))
    with bar:
        moments = _calibration(cfg, model, layers, train_data, bar) if cfg.data_aware else None
        for name in sorted(ps, key=list(layers).index):
            prune_layer_(layers[name], ps[name], cfg.criterion, pattern,
                         moments(name) if moments else None, cfg.damp)


def _calibration(cfg: _Sharing | Prune, model: nn.Module, layers: Mapping[str, nn.Module],
                 train_data, bar: tqdm) -> Callable[[str], torch.Tensor] | None:
    """``moments(name)`` for ``share_weights_`` from ``cfg.calibrate`` evenly spaced
    training inputs (ticking ``bar`` once per layer), or None when the config does not
    calibrate."""
    if not cfg.calibrate:
        return None
    inputs = train_data.tensors[0]
    count = min(cfg.calibrate, len(inputs))
    pick = torch.from_numpy(np.linspace(0, len(inputs) - 1, count).round().astype(np.int64))
    sample = inputs[pick]
    done: set[str] = set()
    reuse: dict[str, torch.Tensor] = {}  # siblings of the last measured layer

    def moments(name: str) -> torch.Tensor:
        done.add(name)
        bar.update()
        if name in reuse:
            return reuse.pop(name)
        reuse.clear()  # another layer is shared now: the siblings' moments may be stale
        out = input_moments(model, layers[name], sample)
        pending = {n: m for n, m in layers.items() if n not in done}
        reuse.update(dict.fromkeys(same_input(model, layers[name], pending, sample), out))
        return out

    return moments


def _run_sharing(step: Step, layers: Mapping[str, nn.Module], names: list[str],
                 model: nn.Module, train_data, progress: bool) -> None:
    own = dict(step.overrides)
    group = {n: layers[n] for n in names if n not in own}
    cfg = step.config
    calibrated = sum(1 for n in names if own.get(n, cfg).calibrate)
    bar = tqdm(total=calibrated, desc=f"{cfg.method}: GPTQ calibration", unit="layer",
               disable=not (progress and calibrated))
    with bar:
        if group:
            q.share_weights_(group, cfg.quantizer(), cfg.shared,
                             _calibration(cfg, model, layers, train_data, bar), cfg.damp)
        for n, c in own.items():
            q.share_weights_({n: layers[n]}, c.quantizer(),
                             moments=_calibration(c, model, layers, train_data, bar),
                             damp=c.damp)


def _run_finetune(cfg: FineTune, model: nn.Module, train_data, progress: bool) -> None:
    fit(model, train_data, cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed,
        weight_decay=cfg.weight_decay, progress=progress)


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's weight (``(out, in*kh*kw)`` view, biases excluded)."""

    name: str
    kind: str
    shape: tuple[int, int]
    weights: int
    nonzero: int
    distinct: int
    entropy_bits: float

    @property
    def sparsity(self) -> float:
        return 1 - self.nonzero / self.weights if self.weights else 0.0

    @property
    def bits_per_weight(self) -> float:
        return self.entropy_bits / self.weights if self.weights else 0.0


@dataclass(frozen=True)
class CompressionReport:
    """Per-layer statistics plus, when ``compress_`` had ``val_data``, the validation
    metrics after each step (``history``: ``(step description, metrics)`` pairs)."""

    layers: tuple[LayerStats, ...]
    history: tuple[tuple[str, dict[str, float]], ...] = ()

    @property
    def weights(self) -> int:
        return sum(s.weights for s in self.layers)

    @property
    def sparsity(self) -> float:
        return 1 - sum(s.nonzero for s in self.layers) / self.weights if self.weights else 0.0

    @property
    def entropy_bits(self) -> float:
        """Sum of the per-layer entropies (each layer coded with its own statistics)."""
        return sum(s.entropy_bits for s in self.layers)

    @property
    def bits_per_weight(self) -> float:
        return self.entropy_bits / self.weights if self.weights else 0.0

    def table(self) -> str:
        """A plain-text table, one row per layer plus the total."""
        rows = [("layer", "kind", "shape", "sparsity", "distinct", "bits/weight", "x vs fp32")]
        for s in self.layers:
            rows.append((s.name, s.kind, f"{s.shape[0]}x{s.shape[1]}", f"{s.sparsity:.2%}",
                         str(s.distinct), f"{s.bits_per_weight:.3f}", _ratio(s.bits_per_weight)))
        rows.append(("total", "", str(self.weights), f"{self.sparsity:.2%}", "",
                     f"{self.bits_per_weight:.3f}", _ratio(self.bits_per_weight)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        for desc, metrics in self.history:
            lines.append(f"after {desc}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        return "\n".join(lines)

    __str__ = table


def _ratio(bits: float) -> str:
    return f"{32 / bits:.1f}" if bits > 0 else "inf"


@torch.no_grad()
def layer_report(model: nn.Module, names: Iterable[str] | None = None) -> CompressionReport:
    """Sparsity, distinct values and entropy of the weights of ``model`` 's Linear/Conv2d
    layers (all of them, or ``names``), as the layers compute with them now."""
    layers = layers_of(model)
    stats = []
    for name in (layers if names is None else names):
        layer = layers[name]
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1).to(torch.float32).numpy()
        bits = w.view(np.uint32)
        stats.append(LayerStats(name, kind_of(layer), (w.shape[0], w.shape[1]), int(w.size),
                                int(np.count_nonzero(w)), int(np.unique(bits).size),
                                float(entropy_bits(w)) + 0.0))  # no -0.0
    return CompressionReport(tuple(stats))


def _describe(step: Step, i: int) -> str:
    c = step.config
    if isinstance(c, Prune):
        how = "" if c.criterion == "magnitude" else f" {c.criterion}"
        return f"step {i} prune p={c.p:g}{f' {c.pattern}' if c.pattern else ''} {c.scope}{how}"
    if isinstance(c, FineTune):
        return f"step {i} finetune {c.epochs} epoch(s)"
    if isinstance(c, MPD):
        return f"step {i} mpd blocks={c.blocks}"
    return (f"step {i} {c.method} k={c.k}{' shared' if c.shared else ''}"
            f"{f' calibrated on {c.calibrate}' if c.calibrate else ''}")


def compress_(model: nn.Module, recipe: Recipe | Sequence | str | os.PathLike,
              train_data: TensorDataset | None = None, val_data: TensorDataset | None = None,
              *, bake: bool = True, progress: bool = False) -> CompressionReport:
    """Apply a compression recipe to ``model`` in place.

    Args:
        model: any ``nn.Module``; its ``nn.Linear``/``nn.Conv2d`` weights are compressed.
        recipe: a ``Recipe``, a list of steps (dicts, configs or ``Step`` s) or the
            path of a YAML/JSON recipe file.
        train_data: used by fine-tuning (``finetune`` steps, iterative pruning).
        val_data: if given, evaluated after every step (``report.history``).
        bake: make the constraints permanent at the end (plain weights that obey them);
            with ``bake=False`` the layers keep their parametrizations, so further
            ``compactnn.train.fit`` calls keep masks and shared values.
        progress: show tqdm bars while fine-tuning and calibrating.

    Returns:
        A ``CompressionReport`` of the layers the recipe masked, pruned or weight-shared.

    >>> from compactnn import zoo
    >>> torch.manual_seed(0) and None
    >>> model = zoo.build("lenet300", in_features=64)
    >>> report = compress_(model, [{"method": "prune", "p": 90}, {"method": "cws", "k": 4}])
    >>> [(round(s.sparsity, 2), s.distinct) for s in report.layers]
    [(0.9, 5), (0.9, 5), (0.9, 5)]
    """
    plan = check_recipe(recipe, model, train_data)
    layers = layers_of(model)
    touched: list[str] = []
    history = []
    for i, (step, names) in enumerate(plan):
        cfg = step.config
        if isinstance(cfg, FineTune):
            _run_finetune(cfg, model, train_data, progress)
        elif isinstance(cfg, MPD):
            _run_mpd(step, layers, names)
        elif isinstance(cfg, Prune):
            _run_prune(step, layers, names, model, train_data, progress)
        else:
            _run_sharing(step, layers, names, model, train_data, progress)
        touched += [n for n in names if n not in touched]
        if val_data is not None:
            history.append((_describe(step, i), evaluate(model, val_data)))
    if bake:
        bake_(model)
    touched.sort(key=list(layers).index)
    report = layer_report(model, touched)
    return CompressionReport(report.layers, tuple(history))
