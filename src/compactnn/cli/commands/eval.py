"""``compactnn eval``: a compact file's quality, measured the way its model kind says
(dataset metric, agreement with the original, per-corpus embedding quality)."""

from __future__ import annotations

import argparse

from compactnn.cli.common import add_data, add_max_length, add_workers
from compactnn.cli.registry import Command, register


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file")
    add_data(p, required=False)
    add_workers(p)
    add_max_length(p)
    p.add_argument("--reference", metavar="DIR", help="Hugging Face models: the original "
                   "model folder to measure agreement with (default: the folder recorded "
                   "by compress, if it still exists)")


def run(a: argparse.Namespace) -> None:
    from compactnn.cli import models

    kind, model, info = models.load_file(a.file)
    print(kind.evaluate(a, model, info))


register(Command("eval", "accuracy or MSE of a compact file",
                 "Evaluate a compact file on a dataset's test split (default: the dataset "
                 "recorded in the file).", arguments, run))
