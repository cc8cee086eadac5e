"""The weight-sharing steps ``cws``, ``pws``, ``uq`` and ``ecsq``: one codebook per layer,
or one ``shared`` by the layers of a kind, optionally with GPTQ assignments calibrated
on the layer inputs (``compactnn.transforms.calibrate``).

Override semantics: any field but ``shared`` can be overridden; an overridden layer
gets its own codebook.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from compactnn import _validate as v
from compactnn.transforms import quantize as q
from compactnn.transforms.calibrate import moments_source
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.plan import check_calibration
from compactnn.transforms.recipe import Step
from compactnn.transforms.registry import Plan, Run, register_step
from compactnn.transforms.sharing import share_layers_

__all__ = ["Sharing", "CWS", "PWS", "UQ", "ECSQ"]


@dataclass(frozen=True)
class Sharing:
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
        v.integer(f"{self.method} k", self.k, 1, error=RecipeError)
        v.flag(f"{self.method} shared", self.shared, error=RecipeError)
        v.integer(f"{self.method} calibrate", self.calibrate, 0, error=RecipeError)
        v.positive(f"{self.method} damp", self.damp, error=RecipeError)

    def quantizer(self) -> Callable[[np.ndarray], q.Quantized]:
        """The 1-D quantizer this config describes (values -> ``Quantized``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class CWS(Sharing):
    """k-means weight sharing: ``mode="exact"`` (1-D Lloyd to its fixed point, init
    ``"linear"``/``"quantile"``) or ``"sklearn"`` (init ``"linear"``/``"k-means++"``)."""

    mode: str = "exact"
    init: str = "linear"
    seed: int = 0
    method: ClassVar[str] = "cws"

    def __post_init__(self) -> None:
        super().__post_init__()
        v.choice("cws mode", self.mode, ("exact", "sklearn"), error=RecipeError)
        v.choice(f"cws init (mode {self.mode})", self.init,
                 ("linear", "quantile") if self.mode == "exact" else ("linear", "k-means++"),
                 error=RecipeError)
        v.integer("cws seed", self.seed, 0, error=RecipeError)

    def quantizer(self):
        if self.mode == "exact":
            return functools.partial(q.kmeans_1d, k=self.k, init=self.init)
        return functools.partial(q.kmeans_sklearn, k=self.k, init=self.init, seed=self.seed)


@dataclass(frozen=True)
class PWS(Sharing):
    """Probabilistic weight sharing: quantile representatives, unbiased seeded rounding."""

    seed: int = 0
    method: ClassVar[str] = "pws"

    def __post_init__(self) -> None:
        super().__post_init__()
        v.integer("pws seed", self.seed, 0, error=RecipeError)

    def quantizer(self):
        return functools.partial(q.pws_1d, k=self.k, seed=self.seed)


@dataclass(frozen=True)
class UQ(Sharing):
    """Uniform quantization with the smallest grid step giving at most k non-zero levels."""

    method: ClassVar[str] = "uq"

    def quantizer(self):
        return functools.partial(q.uq_1d, k=self.k)


@dataclass(frozen=True)
class ECSQ(Sharing):
    """Entropy-constrained scalar quantization, λ bisected to leave at most k clusters
    out of ``oversample·k`` initial ones."""

    oversample: int = 2
    method: ClassVar[str] = "ecsq"

    def __post_init__(self) -> None:
        super().__post_init__()
        v.integer("ecsq oversample", self.oversample, 1, error=RecipeError)

    def quantizer(self):
        return functools.partial(q.ecsq_1d, k=self.k, oversample=self.oversample)


def _needs_data(step: Step) -> str | None:
    if any(c.calibrate for c in (step.config, *(c for _, c in step.overrides))):
        return "calibrates"
    return None


def _check(plan: Plan, i: int, step: Step, chosen: list[str]) -> None:
    check_calibration(plan, i, step, chosen)
    plan.shared.update(chosen)
    plan.constrained.update(chosen)


def _run(run: Run, step: Step, names: list[str]) -> None:
    layers = run.layers
    own = dict(step.overrides)
    group = {n: layers[n] for n in names if n not in own}
    cfg = step.config
    calibrated = sum(1 for n in names if step.config_for(n).calibrate)
    bar = tqdm(total=calibrated, desc=f"{cfg.method}: GPTQ calibration", unit="layer",
               disable=not (run.progress and calibrated))

    def moments(c: Sharing):
        if not c.calibrate:
            return None
        return moments_source(run.model, layers, run.train_data, c.calibrate, bar.update,
                              device=run.device, autocast=run.autocast)

    with bar:
        if group:
            share_layers_(group, cfg.quantizer(), cfg.shared, moments(cfg), cfg.damp,
                            device=run.device)
        for n, c in own.items():
            share_layers_({n: layers[n]}, c.quantizer(), moments=moments(c), damp=c.damp,
                            device=run.device)


def _describe(c: Sharing) -> str:
    return (f"{c.method} k={c.k}{' shared' if c.shared else ''}"
            f"{f' calibrated on {c.calibrate}' if c.calibrate else ''}")


for _config in (CWS, PWS, UQ, ECSQ):
    register_step(_config, handler=_run, check=_check, describe=_describe,
                  needs_data=_needs_data,
                  overridable=[f.name for f in fields(_config) if f.name != "shared"])
