"""``compactnn bench``: the compact model against its dense twin (or a named model
alone: ``bench minilm``), timed the way its model kind says."""

from __future__ import annotations

import argparse

from compactnn.cli.common import add_data, add_max_length, add_threads, batch_sizes, threads_of
from compactnn.cli.registry import Command, register


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="compact file, or minilm (the original model alone)")
    p.add_argument("--batch-sizes", type=batch_sizes, default=[1, 256])
    add_data(p, required=False)
    add_max_length(p)
    add_threads(p)


def run(a: argparse.Namespace) -> None:
    from compactnn.cli import models
    from compactnn.kernels import backend

    a.threads = threads_of(a)
    print(backend.describe())
    kind = models.named(a.file)
    if kind is not None:
        print(kind.bench(a, None, None))
        return
    kind, model, info = models.load_file(a.file)
    print(kind.bench(a, model, info))


register(Command("bench", "compact vs dense latency and throughput",
                 "Time the compact model against its dense twin (decoded float32 weights) "
                 "at several batch sizes.", arguments, run))
