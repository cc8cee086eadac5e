"""Format conversion (``nn.to_compact``) of one streamed block and its entry in the
file, in this process or in worker processes.

``add(writer, part, ..., workers=1)`` converts ``part`` in place and appends it to the
``io.stream.StreamWriter``. With ``workers > 1`` the layers are independent tasks: each
is sent to a pool of ``workers`` spawned processes (one thread each, started once and
kept for the run, :class:`Encoders`), largest first; a worker converts its layer with
the same policy and returns what the file stores of it (its arrays, its description
entry, its plain tensors such as the bias), and the converted layers leave ``part``.
The file is the same bytes for any number of workers: every layer's conversion is
deterministic (policies ``smallest`` / ``energy`` / a format; ``fastest`` times
products and is not), and the file's layout does not depend on the order parts are
appended. Under ``torchrun`` the ranks share the layers the same way (:func:`add`).
"""

from __future__ import annotations

import functools
import multiprocessing
from typing import Any

import numpy as np
import torch
from torch import nn

from compactnn.io.save import _layers
from compactnn.io.stream import StreamWriter
from compactnn.nn import to_compact
from compactnn.nn.convert import compactable_layers
from compactnn.nn.tree import set_module
from compactnn.transforms import parallel

__all__ = ["add", "Encoders", "encode_layer"]


def encode_layer(name: str, layer: nn.Module, policy: Any, storage: str,
                 candidates: list[str] | None
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """``(arrays, description entries, plain tensors)`` of one layer at path ``name``
    converted by ``to_compact``: what ``StreamWriter.add`` stores of it."""
    holder = parent = nn.Module()
    *heads, leaf = name.split(".")
    for h in heads:
        parent.add_module(h, nn.Module())
        parent = getattr(parent, h)
    parent.add_module(leaf, layer)
    to_compact(holder, policy, storage=storage, candidates=candidates, inplace=True)
    arrays: dict[str, np.ndarray] = {}
    entries = _layers(holder, arrays)
    state = {k: t.detach().cpu().contiguous().numpy() for k, t in holder.state_dict().items()}
    return arrays, entries, state


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run(task: tuple) -> tuple:
    return encode_layer(*task)


class Encoders:
    """A pool of ``workers`` spawned processes that encode layers (lazily started)."""

    def __init__(self, workers: int) -> None:
        if type(workers) is not int or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.workers = workers
        self._pool = None

    def map(self, tasks: list[tuple]) -> list[tuple]:
        """``[encode_layer(*t) for t in tasks]`` in the pool, largest layer first."""
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
            self._pool = ctx.Pool(self.workers, initializer=_init_worker)
        order = sorted(range(len(tasks)), key=lambda i: (-tasks[i][1].weight.numel(), i))
        done = self._pool.map(_run, [tasks[i] for i in order], chunksize=1)
        out: list[Any] = [None] * len(tasks)
        for i, r in zip(order, done, strict=True):
            out[i] = r
        return out

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None


def add(writer: StreamWriter | None, part: nn.Module, policy: Any, storage: str,
        candidates: list[str] | None, encoders: Encoders | None = None) -> None:
    """Convert ``part`` (``to_compact(..., inplace=True)``) and append it to ``writer``;
    with ``encoders`` its layers are converted in their worker processes.

    Under a ``transforms.parallel.Parallel`` of several ranks every rank calls it
    (``writer`` on rank 0 only, ``None`` elsewhere): each layer is converted on the rank
    :meth:`~compactnn.transforms.parallel.Parallel.map` assigns it by size, and rank 0
    appends them all."""
    layers = compactable_layers(part)
    par = parallel.current()
    tasks = [(name, m, policy, storage, candidates) for name, m in layers]
    if par.size > 1 and len(layers) > 1:
        done = par.map([(float(t[1].weight.numel()), functools.partial(encode_layer, *t))
                        for t in tasks])
    elif encoders is not None and len(layers) > 1:
        done = encoders.map(tasks)
    else:
        if writer is not None:
            to_compact(part, policy, storage=storage, candidates=candidates, inplace=True)
            writer.add(part)
        return
    if writer is None:
        return
    for (name, _), (arrays, entries, state) in zip(layers, done, strict=True):
        writer.append_arrays(arrays)
        writer.layers.update(entries)
        writer.add_state({k: torch.from_numpy(a) for k, a in state.items()})
        set_module(part, name, nn.Identity())
    writer.add(part)
