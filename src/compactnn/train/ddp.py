"""``compactnn.train.fit`` on the ranks of a ``torch.distributed`` process group
(``torchrun``; ``compactnn.stream.distributed.world`` sets it up): data-parallel training
with ``torch.nn.parallel.DistributedDataParallel``.

Every rank draws the same global batches (the same seeded order as one process) and
trains on its slice of each (:func:`share`: contiguous, sizes differ by at most one); the
slice's mean loss is weighted by ``W * n_rank / n_batch`` so DDP's gradient average is
the gradient of the global batch's mean loss, as in one process, up to the order of the
all-reduce's sum. A rank whose slice is empty (a global batch smaller than ``W``) runs one
sample at weight 0, so it still meets the all-reduce.

``DistributedDataParallel`` is built with ``static_graph=True``: compactnn's
parametrizations leave parameters that never get a gradient (a weight-shared layer's
empty ``original``; the LM head of a distilled Hugging Face model), which DDP finds on
the first step and skips afterwards (no graph search per step as with
``find_unused_parameters``). Buffers (masks, assignments) are not broadcast each step
(``forward_sync_buffers`` / ``broadcast_buffers`` False: they do not change while
training); :func:`sync` copies rank 0's parameters and buffers to every rank after each
epoch, so BatchNorm running statistics (each rank's own slices) are rank 0's and the
ranks leave ``fit`` equal. Gloo on the CPU; NCCL with the model on the rank's GPU
(``device_ids``; written, not run: no GPU here).
"""

from __future__ import annotations

import inspect

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["ranks", "wrap", "share", "total", "sync"]


def ranks() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap(model: nn.Module, dev: torch.device) -> nn.Module:
    """``model`` (already on ``dev``) inside ``DistributedDataParallel`` (module docstring),
    which broadcasts rank 0's parameters and buffers first."""
    ids = None
    if dev.type == "cuda":
        ids = [dev.index if dev.index is not None else torch.cuda.current_device()]
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.13 names the per-step buffer broadcast forward_sync_buffers
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers"
               in inspect.signature(ddp.__init__).parameters else "broadcast_buffers")
    return ddp(model, device_ids=ids, static_graph=True, **{no_sync: False})


def share(xb: torch.Tensor, yb: torch.Tensor, rank: int, world: int
          ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """This rank's slice of a global batch and its loss weight ``W * n_rank / n``."""
    n = len(xb)
    cut = [(n * r) // world for r in range(world + 1)]
    lo, hi = cut[rank], cut[rank + 1]
    if lo == hi:  # nothing for this rank: one sample at weight 0
        return xb[:1], yb[:1], 0.0
    return xb[lo:hi], yb[lo:hi], world * (hi - lo) / n


def total(values: list[float]) -> list[float]:
    """``values`` summed over the ranks (float64 all-reduce)."""
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


@torch.no_grad()
def sync(model: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank, in place."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.numel():
            dist.broadcast(t.data, src=0)
