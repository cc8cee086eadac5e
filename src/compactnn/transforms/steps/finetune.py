"""The ``finetune`` step: constraint-keeping fine-tuning of the whole model with
``compactnn.train.fit`` (Adam, cosine learning rate), optionally distilled from the
model as the recipe received it (``distill`` > 0: soft targets at ``temperature``);
with ``reassign`` the weight-sharing assignments may move too
(``compactnn.transforms.latent``: latent weights, straight-through)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from compactnn import _validate as v
from compactnn.train import fit
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.latent import from_latent_, to_latent_
from compactnn.transforms.registry import Run, register_step

__all__ = ["FineTune", "finetune"]


@dataclass(frozen=True)
class FineTune:
    """Constraint-keeping fine-tuning with ``compactnn.train.fit`` (Adam, cosine lr).

    ``distill`` > 0 (classification): knowledge distillation with that weight on the
    soft targets at ``temperature`` (``fit``'s ``teacher``), the teacher being the model
    as ``compress_`` received it, before any step (``Run.teacher``).

    ``reassign``: weight-shared layers train a latent weight each (initialised to the
    weight, moved by the weight's gradient straight through the rounding) and take
    the codebook value nearest it, so weights may change value; at the end the
    layers are ordinary ``SharedWeights`` again with those assignments
    (``compactnn.transforms.latent``). ``reassign_lr``: the latent weights' learning
    rate (default ``lr``; the same cosine schedule)."""

    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 128
    seed: int = 0
    weight_decay: float = 0.0
    distill: float = 0.0
    temperature: float = 4.0
    reassign: bool = False
    reassign_lr: float | None = None
    method: ClassVar[str] = "finetune"

    def __post_init__(self) -> None:
        v.integer("finetune epochs", self.epochs, 0, error=RecipeError)
        v.integer("finetune batch_size", self.batch_size, 1, error=RecipeError)
        v.integer("finetune seed", self.seed, 0, error=RecipeError)
        v.positive("finetune lr", self.lr, error=RecipeError)
        v.positive("finetune weight_decay", self.weight_decay, zero=True, error=RecipeError)
        v.number("finetune distill", self.distill, 0, 1, error=RecipeError)
        v.positive("finetune temperature", self.temperature, error=RecipeError)
        v.flag("finetune reassign", self.reassign, error=RecipeError)
        if self.reassign_lr is not None:
            v.positive("finetune reassign_lr", self.reassign_lr, error=RecipeError)
            if not self.reassign:
                raise RecipeError("finetune reassign_lr needs reassign: true")


def finetune(config: FineTune, run: Run) -> None:
    """Fine-tune ``run.model`` on ``run.train_data`` as ``config`` says, on
    ``run.device`` under ``run.autocast``."""
    teacher = None
    if config.distill:
        if run.teacher is None:
            raise RecipeError("finetune distill needs the teacher compress_ keeps "
                              "(Run.teacher)")
        teacher = run.teacher
    if config.reassign:
        step = 1.0 if config.reassign_lr is None else config.reassign_lr / config.lr
        to_latent_(run.model, step)
    try:
        fit(run.model, run.train_data, config.epochs, config.lr, config.batch_size,
            config.seed, weight_decay=config.weight_decay, progress=run.progress,
            device=run.device, autocast=run.autocast, num_workers=run.num_workers,
            teacher=teacher, distill=config.distill, temperature=config.temperature)
    finally:
        if config.reassign:
            from_latent_(run.model)


def _describe(c: FineTune) -> str:
    out = f"finetune {c.epochs} epoch(s)"
    if c.distill:
        out += f", distilled ({c.distill:g} at T={c.temperature:g})"
    if c.reassign:
        out += ", assignments may move"
        if c.reassign_lr is not None:
            out += f" (latent lr {c.reassign_lr:g})"
    return out


register_step(FineTune, handler=lambda run, step, names: finetune(step.config, run),
              describe=_describe, needs_data=lambda step: "fine-tunes", whole_model=True)
