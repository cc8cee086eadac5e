"""The ``mpd`` step: MPDCompress block masks (``compactnn.transforms.mpd.block_mask_``).

Masks come before pruning and weight sharing on the same layers; fine-tuning keeps
them, and the masked layers convert to the ``blockdiag`` format
(``compactnn.to_compact``). ``rescale`` is the old name of ``rescale_init`` and is
still read from recipes.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

from compactnn import _validate as v
from compactnn.nn.blockdiag import BlockMask
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.mpd import block_mask_, mask_shape
from compactnn.transforms.recipe import Step
from compactnn.transforms.registry import Plan, Run, register_step

__all__ = ["MPD"]


@dataclass(frozen=True)
class MPD:
    """MPDCompress block masks: ``blocks`` N seeded blocks per layer; the step's ``i``-th
    layer (module order) gets seed ``seed + i``. ``rescale_init`` multiplies the weights
    by about ``sqrt(N)`` (for models trained from scratch after masking, not for trained
    weights); ``last_dense`` leaves the model's last ``nn.Linear`` / ``nn.Conv2d`` out of
    the step (whatever ``layers`` says)."""

    blocks: int
    _: KW_ONLY
    seed: int = 0
    rescale_init: bool = False
    last_dense: bool = False
    method: ClassVar[str] = "mpd"

    def __post_init__(self) -> None:
        v.integer("mpd blocks", self.blocks, 1, error=RecipeError)
        v.integer("mpd seed", self.seed, 0, error=RecipeError)
        v.flag("mpd rescale_init", self.rescale_init, error=RecipeError)
        v.flag("mpd last_dense", self.last_dense, error=RecipeError)


def _check(plan: Plan, i: int, step: Step, chosen: list[str]) -> list[str]:
    if step.config.last_dense and plan.layers:
        last = list(plan.layers)[-1]
        chosen = [n for n in chosen if n != last]
    twice = [n for n in chosen if n in plan.masked]
    if twice:
        raise RecipeError(f"step {i} (mpd): {', '.join(twice)} already carry a block mask")
    late = [n for n in chosen if n in plan.constrained]
    if late:
        raise RecipeError(f"step {i}: mpd after pruning or weight sharing on "
                          f"{', '.join(late)}; apply block masks first")
    for j, name in enumerate(chosen):
        cfg = step.config_for(name)
        try:
            BlockMask(mask_shape(plan.layers[name]), cfg.blocks, cfg.seed + j)
        except (TypeError, ValueError) as e:
            raise RecipeError(f"step {i} (mpd), layer {name!r}: {e}") from None
    plan.masked.update(chosen)
    plan.constrained.update(chosen)
    return chosen


def _run(run: Run, step: Step, names: list[str]) -> None:
    layers = run.layers
    for j, name in enumerate(names):
        cfg = step.config_for(name)
        block_mask_(layers[name], cfg.blocks, cfg.seed + j, cfg.rescale_init)


register_step(MPD, handler=_run, check=_check, describe=lambda c: f"mpd blocks={c.blocks}",
              overridable={"blocks", "seed", "rescale_init"}, renamed={"rescale": "rescale_init"})
