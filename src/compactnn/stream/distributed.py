"""``torchrun`` for compactnn: the process group of a distributed run and the
``transforms.parallel.Parallel`` over it.

``world(device)`` is a context manager for every command that can run distributed:
under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) it initialises the default
process group from the environment (``env://``; gloo for CPU runs, NCCL when
``device`` is CUDA, each rank on ``cuda:<LOCAL_RANK>``), installs a ``Parallel`` over
it for the enclosed code (``transforms.parallel.using``) and destroys the group at
the end; otherwise it yields this process alone. The NCCL branch is written for GPU
machines and has not run (no GPU here); gloo is tested
(``tests/stream/test_distributed.py``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

from compactnn.errors import UserError
from compactnn.transforms import parallel

__all__ = ["world", "launched"]


def launched() -> bool:
    """Whether this process is one rank of several started by ``torchrun``."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise UserError(f"WORLD_SIZE must be an integer, got "
                        f"{os.environ['WORLD_SIZE']!r}") from None


@contextlib.contextmanager
def world(device: str | torch.device | None = None) -> Iterator[parallel.Parallel]:
    """The ranks of this run (see the module docstring)."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        if dist.is_available() and dist.is_initialized():
            with parallel.using(parallel.Parallel()) as p:
                yield p
        else:
            yield parallel.current()
        return
    if not dist.is_available():
        raise UserError("torchrun needs a torch build with torch.distributed")
    cuda = device is not None and torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    where: str | torch.device = "cpu"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        where = torch.device("cuda", local)
    dist.init_process_group(backend)
    try:
        with parallel.using(parallel.Parallel(device=where)) as p:
            yield p
    finally:
        dist.destroy_process_group()
