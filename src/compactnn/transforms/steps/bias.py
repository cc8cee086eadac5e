"""The ``round_bias`` step: each selected layer's bias rounded to ``bits`` mantissa bits
(float32, to nearest, ties to even) and frozen (``requires_grad`` False), so later
fine-tuning adapts the weights around the rounded biases and keeps them on the grid.

Lossy, and meant for the smallest files: the packed layout's float coder
(``io/packed.py``, ``coding.adaptive.encode_floats``) learns that the dropped mantissa
bits are zero: at 4 bits LeNet-5's 500 fc1 biases took 8 bits a value there instead of
27 (``docs/results/codecs.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from compactnn import _validate as v
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.recipe import Step
from compactnn.transforms.registry import Plan, Run, register_step

__all__ = ["RoundBias", "round_mantissa"]

_MANTISSA = 23  # float32 mantissa bits


@dataclass(frozen=True)
class RoundBias:
    """Round the biases of the selected layers to ``bits`` (0-23) mantissa bits and
    freeze them."""

    bits: int = 4
    method: ClassVar[str] = "round_bias"

    def __post_init__(self) -> None:
        v.integer("round_bias bits", self.bits, 0, _MANTISSA, error=RecipeError)


def round_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """``x`` (float32) rounded to ``bits`` mantissa bits: to nearest, ties to even; a
    finite value that would round to infinity is truncated instead; infinities and NaNs
    are unchanged."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    drop = _MANTISSA - bits
    if drop <= 0:
        return x.copy()
    u = x.view(np.uint32).astype(np.uint64)
    keep = ~np.uint64((1 << drop) - 1)
    odd = (u >> np.uint64(drop)) & np.uint64(1)
    near = (u + np.uint64((1 << (drop - 1)) - 1) + odd) & keep
    exp_max = np.uint64(0xFF << _MANTISSA)
    overflow = (near & exp_max) == exp_max  # rounded up to inf, or was inf/NaN already
    out = np.where(overflow, u & keep, near)
    special = (u & exp_max) == exp_max
    out = np.where(special, u, out)
    return out.astype(np.uint32).view(np.float32).reshape(x.shape)


def _check(plan: Plan, i: int, step: Step, chosen: list[str]) -> None:
    if not any(getattr(plan.layers[n], "bias", None) is not None for n in chosen):
        raise RecipeError(f"step {i} (round_bias): none of the layers it selects has a bias")


@torch.no_grad()
def _run(run: Run, step: Step, names: list[str]) -> None:
    layers = run.layers
    for n in names:
        bias = getattr(layers[n], "bias", None)
        if bias is None:
            continue
        rounded = round_mantissa(bias.detach().to("cpu", torch.float32).numpy(),
                                 step.config_for(n).bits)
        bias.copy_(torch.from_numpy(rounded).to(bias.device, bias.dtype))
        bias.requires_grad_(False)


register_step(RoundBias, handler=_run, check=_check,
              describe=lambda c: f"round_bias bits={c.bits}", overridable=["bits"])
