"""``compactnn report``: an HTML page for a compact file of a zoo model on a dataset."""

from __future__ import annotations

import argparse

from compactnn.cli.common import (
    add_data,
    add_threads,
    batch_sizes,
    check_output,
    positive_int,
    threads_of,
)
from compactnn.cli.registry import Command, register
from compactnn.errors import UserError


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file")
    p.add_argument("--baseline", help="dense checkpoint to compare against")
    p.add_argument("--batch-sizes", type=batch_sizes, default=[1, 256])
    p.add_argument("--repeats", type=positive_int, default=15, help="timed runs per measurement")
    add_data(p, required=False)
    add_threads(p)
    p.add_argument("-o", "--output", required=True, help="HTML file to write")


def run(a: argparse.Namespace) -> None:
    from compactnn.bench import threads
    from compactnn.cli import models
    from compactnn.cli.models.zoo import dataset
    from compactnn.report import collect, write_report
    from compactnn.train.checkpoint import dense_file_bytes
    from compactnn.zoo.checkpoint import load_checkpoint

    check_output(a.output, a.file, a.baseline)
    kind, model, info = models.load_file(a.file)
    if kind.name != "zoo":
        raise UserError(f"{a.file}: report takes a zoo model trained on a dataset, not a "
                        f"{kind.name} model")
    _, te = dataset(a.dataset, a.data, info.metadata.get("dataset"), model)
    baseline = baseline_bytes = None
    if a.baseline:
        baseline, *_ = load_checkpoint(a.baseline)
        baseline_bytes = dense_file_bytes(baseline)
    with threads(threads_of(a)):
        data = collect(a.file, te, baseline=baseline, baseline_bytes=baseline_bytes,
                       batch_sizes=a.batch_sizes, repeats=a.repeats)
    write_report(data, a.output)
    print(f"wrote {a.output}")


register(Command("report", "HTML report with tables and plots",
                 "Write an HTML page: baseline vs compact, layer table, size per layer and "
                 "format, time per format, accuracy vs size.", arguments, run))
