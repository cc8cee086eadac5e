"""Data-parallel calibration moments under ``torch.distributed`` (gloo on CPU, NCCL on
GPUs), equal bit for bit to the one-process result.

The calibration samples are cut into fixed batches (``BATCH`` rows, the same for every
world size); rank ``r`` of ``W`` measures batches ``r, r + W, ...``; the per-batch sums
``Σ x xᵀ`` (float64) and counts are gathered to every rank and added in batch order, so
the result does not depend on ``W`` or on the arrival order of messages. Memory: one
``in x in`` float64 matrix per batch on every rank (a skeleton: a production version
would reduce in a fixed tree instead of gathering all partial sums).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["BATCH", "linear_input_moments"]

BATCH = 64


class _Reached(Exception):
    pass


@torch.no_grad()
def _batch_sum(model: nn.Module, layer: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    got: dict[str, torch.Tensor] = {}

    def hook(module, args):
        got["x"] = args[0].detach()
        raise _Reached

    handle = layer.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    if "x" not in got:
        raise ValueError("the layer was not called by the model's forward pass")
    cols = got["x"].reshape(-1, layer.in_features).to(torch.float64)
    return cols.T @ cols, cols.shape[0]


def linear_input_moments(model: nn.Module, layer: nn.Linear, inputs: torch.Tensor
                         ) -> torch.Tensor:
    """``E[x xᵀ]`` (float64) of the inputs of ``layer`` (an ``nn.Linear`` inside
    ``model``) over ``inputs``, measured data-parallel over the default process group
    when one is initialised (every rank passes the same ``inputs``), else in this
    process; the same bits for every world size."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"expected an nn.Linear, got {type(layer).__name__}")
    starts = list(range(0, len(inputs), BATCH))
    if not starts:
        raise ValueError("calibration needs at least one input")
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    rank = dist.get_rank() if world > 1 else 0
    width = layer.in_features
    model.eval()
    mine = torch.zeros(len(starts), width, width, dtype=torch.float64)
    counts = torch.zeros(len(starts), dtype=torch.float64)
    for b in range(rank, len(starts), world):
        s = starts[b]
        mine[b], counts[b] = _batch_sum(model, layer, inputs[s:s + BATCH])
    if world > 1:
        parts = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(parts, mine)
        cparts = [torch.zeros_like(counts) for _ in range(world)]
        dist.all_gather(cparts, counts)
        for b in range(len(starts)):
            mine[b] = parts[b % world][b]
            counts[b] = cparts[b % world][b]
    total = torch.zeros(width, width, dtype=torch.float64)
    for b in range(len(starts)):  # fixed order: batch 0, 1, 2, ...
        total += mine[b]
    return total / counts.sum()
