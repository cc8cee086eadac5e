"""``compactnn demo``: the README walk-through, end to end, in a few minutes on 2 cores.

Train LeNet-300-100 on Fashion-MNIST (installing Debian's ``dataset-fashion-mnist``
when it is missing and that is possible, else falling back to scikit-learn digits and
saying so), prune and weight-share it with fine-tuning, convert it with policy
``smallest``, save it, reload it from the file, evaluate it, check it predicts exactly
like the constrained dense model, print baseline vs compact, and write an HTML report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from compactnn.cli.common import add_threads, positive_int, threads_of
from compactnn.cli.registry import Command, register
from compactnn.errors import UserError

__all__ = ["run_demo", "fashion_mnist_or_digits"]


def _say(msg: str) -> None:
    print(msg, flush=True)


def fashion_mnist_or_digits(dataset: str, data_dir: str | None, install: bool):
    """Load ``dataset``; for a missing Fashion-MNIST try ``apt-get install
    dataset-fashion-mnist`` (as root, when apt-get exists), else fall back to digits."""
    from compactnn import zoo

    try:
        return dataset, zoo.load_dataset(dataset, data_dir)
    except zoo.DatasetError as exc:
        if dataset != "fashion-mnist":
            raise
        reason = str(exc).split(":")[0]
    can_install = (install and data_dir is None and shutil.which("apt-get")
                   and hasattr(os, "geteuid") and os.geteuid() == 0)
    if can_install:
        _say("Fashion-MNIST is missing: installing Debian's dataset-fashion-mnist ...")
        for cmd in (["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"],
                    ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]):
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if done.returncode == 0 and cmd[1] == "install":
                try:
                    return dataset, zoo.load_dataset(dataset)
                except zoo.DatasetError:
                    break
    _say(f"NOTE: {reason}; falling back to scikit-learn's digits (8x8 images) - "
         "the numbers below are for digits, not Fashion-MNIST.")
    return "digits", zoo.load_dataset("digits")


def _file_bytes(model) -> int:
    """Bytes a compact model's file would have (saved into a temporary folder)."""
    from compactnn.io import save

    with tempfile.TemporaryDirectory() as d:
        return save(model, os.path.join(d, "m.cnn"), zoo=getattr(model, "zoo_spec", None))


def run_demo(out: str, epochs: int = 3, dataset: str = "fashion-mnist",
             data_dir: str | None = None, install: bool = True, n_threads: int = 1) -> dict:
    """Run the demo, writing ``baseline.safetensors``, ``model.cnn`` and ``report.html``
    into ``out``; returns the measured numbers."""
    import torch

    from compactnn import load, save, to_compact, train, zoo
    from compactnn.bench import threads
    from compactnn.bench.compare import compare, format_rows, predictions_agree
    from compactnn.io import inspect
    from compactnn.report import Point, collect, write_report
    from compactnn.train.checkpoint import dense_file_bytes
    from compactnn.transforms import Recipe, compress_
    from compactnn.zoo.checkpoint import save_checkpoint
    from compactnn.zoo.presets import RECIPES, model_kwargs

    if epochs < 1:
        raise UserError(f"epochs must be >= 1, got {epochs}")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:  # the user's folder
        raise UserError(f"output folder {out}: {exc.strerror}") from None
    t_start = time.perf_counter()
    torch.set_num_threads(n_threads)

    _say("1/7 data")
    dataset, (tr, te) = fashion_mnist_or_digits(dataset, data_dir, install)
    _say(f"    {dataset}: {len(tr)} training and {len(te)} test images "
         f"{tuple(tr.tensors[0].shape[1:])}")

    if dataset == "digits":
        epochs *= 10  # 1347 training images instead of 60000
    _say(f"2/7 train LeNet-300-100 for {epochs} epoch(s)")
    kwargs = model_kwargs("lenet300", tr)
    torch.manual_seed(0)
    model = zoo.build("lenet300", **kwargs)
    train.fit(model, tr, epochs, lr=1e-3, batch_size=128, progress=True)
    base_metrics = train.evaluate(model, te)
    baseline = dense_file_bytes(model)
    save_checkpoint(model, os.path.join(out, "baseline.safetensors"), "lenet300",
                             kwargs, dataset=dataset, metrics=base_metrics)
    base_model = zoo.build("lenet300", **kwargs)
    base_model.load_state_dict(model.state_dict())
    _say(f"    baseline accuracy {100 * base_metrics['accuracy']:.2f}%, "
         f"float32 file {baseline} bytes")

    _say("3/7 prune, then weight-share, with fine-tuning")
    steps = RECIPES["demo-digits" if dataset == "digits" else "demo"]
    split = next(i for i, st in enumerate(steps) if st["method"] in ("cws", "pws", "uq", "ecsq"))
    points = []
    for label, part, bake in (("pruned", steps[:split], False),
                              ("pruned + shared", steps[split:], True)):
        report = compress_(model, Recipe.from_list(part), tr, te, bake=bake, progress=True)
        acc = train.evaluate(model, te)["accuracy"]
        nbytes = _file_bytes(to_compact(model, "smallest"))
        points.append(Point(f"{label} (compact file)", nbytes, acc))
        _say(f"    {label}: accuracy {100 * acc:.2f}%, compact file {nbytes} bytes")
    _say("    " + report.table().replace("\n", "\n    "))

    _say("4/7 convert with policy 'smallest' and save")
    cm = to_compact(model, "smallest", progress=True)
    path = os.path.join(out, "model.cnn")
    metrics = train.evaluate(model, te)
    meta = {"dataset": dataset, "accuracy": round(metrics["accuracy"], 5),
            "baseline_accuracy": round(base_metrics["accuracy"], 5), "dense_bytes": baseline}
    size = save(cm, path, zoo=("lenet300", kwargs), metadata=meta)
    with threads(n_threads):
        fast = to_compact(model, "fastest", example_input=te.tensors[0][:1])
    fast_path = os.path.join(out, "model_fastest.cnn")
    fast_size = save(fast, fast_path, zoo=("lenet300", kwargs), metadata=meta)

    _say("5/7 reload from the file and evaluate")
    back = load(path)
    same, total = predictions_agree(back, model, te.tensors[0])
    info = inspect(path)
    _say("    " + info.table().replace("\n", "\n    "))
    _say(f"    predictions equal to the constrained dense model on {same}/{total} test inputs")

    _say("6/7 baseline vs compact")
    with threads(n_threads):
        rows = compare([("baseline float32", base_model, baseline),
                                 ("compact (smallest)", back, size),
                                 ("compact (fastest)", load(fast_path), fast_size)],
                                te, (1, 256))
    table = format_rows(rows)
    _say(table)

    _say("7/7 HTML report")
    with threads(n_threads):
        data = collect(path, te, baseline=base_model, baseline_bytes=baseline,
                       title=f"compactnn demo: LeNet-300-100 on {dataset}")
    data.points += points[:1]
    write_report(data, os.path.join(out, "report.html"))
    elapsed = time.perf_counter() - t_start
    _say(f"wrote {out}/baseline.safetensors, {out}/model.cnn ({size} bytes, "
         f"{baseline / size:.1f}x smaller), {out}/model_fastest.cnn ({fast_size} bytes), "
         f"{out}/report.html in {elapsed:.0f} s")
    sys.stdout.flush()
    return {"dataset": dataset, "rows": rows, "file_bytes": size, "baseline_bytes": baseline,
            "agree": (same, total), "seconds": elapsed}


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--epochs", type=positive_int, default=3, help="baseline training epochs")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset (default fashion-mnist)")
    p.add_argument("--data", metavar="DIR", help="folder holding the dataset files")
    p.add_argument("--no-install", action="store_true",
                   help="do not try to install Debian's dataset-fashion-mnist when missing")
    add_threads(p)


def run(a: argparse.Namespace) -> None:
    run_demo(a.out, epochs=a.epochs, dataset=a.dataset, data_dir=a.data,
             install=not a.no_install, n_threads=threads_of(a))


register(Command("demo", "the README demo, end to end",
                 "Train LeNet-300-100 on Fashion-MNIST (or scikit-learn digits when it is not "
                 "available), prune and weight-share it, convert it with policy 'smallest', "
                 "save, reload, evaluate, compare with the baseline and write an HTML report.",
                 arguments, run))
