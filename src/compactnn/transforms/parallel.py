"""Where the recipe steps' independent work runs: this process, or the ranks of a
``torch.distributed`` process group (``torchrun``; gloo on CPU, NCCL on GPUs).

A :class:`Parallel` is installed for a block of code with :func:`using`; the steps ask
:func:`current` for it (this process alone when none is installed), so every rank runs
the same code and meets the same collectives in the same order.

- :meth:`Parallel.map` runs independent tasks (layer solves: GPTQ, SparseGPT, codebook
  fits; block forward passes): each task has a cost, the tasks are bin-packed onto the
  ranks (longest first onto the least-loaded rank, ties to the lower rank: the same
  owners on every rank), each rank runs its own and every result is broadcast from its
  owner, in task order. The results are those of one process running every task.
- :meth:`Parallel.sum_batches` adds per-batch float64 sums (the calibration moments
  ``Σ x xᵀ`` of fixed 64-sample batches): rank ``r`` of ``W`` computes batches ``r, r + W,
  ...`` one round at a time, the round's partial sums are broadcast from their owners and
  added in batch order, so the total is the same bits for every world size; memory is
  three ``in x in`` matrices whatever ``W`` and the number of batches (two in one
  process, one with a single batch).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

__all__ = ["Parallel", "current", "using", "bin_pack"]

T = TypeVar("T")


def bin_pack(costs: Sequence[float], ranks: int) -> list[int]:
    """The owner rank of each task: longest first onto the least-loaded rank (ties: the
    earlier task, the lower rank), deterministic.

    >>> bin_pack([4, 3, 3, 2, 1], 2)
    [0, 1, 1, 0, 0]
    """
    load = [0.0] * ranks
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        r = min(range(ranks), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += float(costs[i])
    return owner


class Parallel:
    """The ranks of a process group (``group=None``: the default group when
    ``torch.distributed`` is initialised, else this process alone); ``device``: where
    collectives' tensors live (``"cuda:<local rank>"`` for NCCL, the CPU for gloo)."""

    def __init__(self, group: Any = None, device: str | torch.device = "cpu") -> None:
        import torch.distributed as dist

        self._dist = dist
        self.group = group
        on = dist.is_available() and dist.is_initialized()
        self.size = dist.get_world_size(group) if on else 1
        self.rank = dist.get_rank(group) if on else 0
        self.device = torch.device(device)

    def map(self, tasks: Sequence[tuple[float, Callable[[], T]]]) -> list[T]:
        """``[fn() for cost, fn in tasks]``, each run on one rank (:func:`bin_pack` by
        cost) and broadcast to all."""
        if self.size == 1:
            return [fn() for _, fn in tasks]
        owner = bin_pack([c for c, _ in tasks], self.size)
        mine = {i: fn() for i, (_, fn) in enumerate(tasks) if owner[i] == self.rank}
        out: list[Any] = []
        for i in range(len(tasks)):
            box = [mine.pop(i) if owner[i] == self.rank else None]
            self._dist.broadcast_object_list(box, src=self._global(owner[i]), group=self.group,
                                             device=self.device if self.device.type == "cuda"
                                             else None)
            out.append(box[0])
        return out

    def sum_batches(self, count: int, like: torch.Tensor,
                    fn: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``0 + fn(0) + fn(1) + ... + fn(count - 1)`` added in that order into a tensor
        of ``like``'s shape and dtype (which it overwrites and returns), batch ``b``
        computed on rank ``b % size``; ``fn(b, out)`` writes batch ``b``'s sum into
        ``out`` (a tensor like ``like``) and returns it. In one process the first batch
        is written into ``like`` itself: one sum in memory when there is one batch."""
        if self.size == 1:
            if count == 0:
                return like.zero_()
            total = fn(0, like)
            total += 0.0  # as 0 + fn(0): a -0.0 sum becomes +0.0, every other value stays
            buf = torch.empty_like(like) if count > 1 else None
            for b in range(1, count):
                total += fn(b, buf)
            return total
        total = like.zero_()
        mine = torch.empty_like(total)
        buf = torch.empty_like(total, device=self.device)
        for first in range(0, count, self.size):
            b = first + self.rank
            own = fn(b, mine).to(self.device) if b < count else None
            for o in range(min(self.size, count - first)):
                part = own if o == self.rank else buf
                self._dist.broadcast(part, src=self._global(o), group=self.group)
                total += part.to(total.device)
        return total

    def _global(self, rank: int) -> int:
        if self.group is None:
            return rank
        return self._dist.get_global_rank(self.group, rank)


class _Serial(Parallel):
    """This process alone (no ``torch.distributed`` calls)."""

    def __init__(self) -> None:
        self.group, self.size, self.rank, self.device = None, 1, 0, torch.device("cpu")


_SERIAL = _Serial()
_CURRENT: contextvars.ContextVar[Parallel | None] = contextvars.ContextVar("compactnn_parallel",
                                                                          default=None)


def current() -> Parallel:
    """The installed :class:`Parallel` (:func:`using`), else this process alone."""
    p = _CURRENT.get()
    return _SERIAL if p is None else p


@contextlib.contextmanager
def using(parallel: Parallel) -> Iterator[Parallel]:
    """Run the enclosed steps on ``parallel``'s ranks."""
    token = _CURRENT.set(parallel)
    try:
        yield parallel
    finally:
        _CURRENT.reset(token)
