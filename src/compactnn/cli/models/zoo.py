"""Zoo models on a dataset (``compactnn train``'s checkpoints): compressed with a
recipe and fine-tuned on the dataset's training split, evaluated on its test split
(accuracy or MSE), benchmarked against their dense twin."""

from __future__ import annotations

import argparse
from typing import Any

from compactnn.cli.common import fmt_metrics, recipe, threads_of, writes
from compactnn.cli.models import Kind, Source
from compactnn.errors import UserError

__all__ = ["KIND", "ZooKind", "dataset"]


def dataset(name: str | None, data_dir: str | None, fallback: str | None = None,
            model: Any = None):
    """The dataset's (train, test) splits; with ``model``, checked to fit its inputs
    first (one test sample), so a mismatch is one line, not a traceback mid-run."""
    from compactnn import zoo
    from compactnn.zoo.files import load_files

    name = name or fallback
    if not name and data_dir is None:
        raise UserError("no dataset given and none recorded in the file; pass --dataset "
                        "NAME or --data FOLDER (class subfolders of images) or FILE.npz")
    tr, te = zoo.load_dataset(name, data_dir) if name else load_files(data_dir)
    if model is not None and len(te):
        import torch

        x = te[0][0][None]
        try:
            with torch.no_grad():
                model(x)
        except (RuntimeError, ValueError) as e:  # torch's / the compact layers' shape check
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"the model does not take {name}'s inputs (shape "
                            f"{tuple(x.shape[1:])}): {first}") from None
    return tr, te


class ZooKind(Kind):
    """A zoo model that a checkpoint (or a file's ``zoo`` entry) names."""

    name = "zoo"

    def holds(self, entry: dict[str, Any]) -> bool:
        return entry.get("zoo") is not None

    def source(self, arg: str) -> Source:
        from compactnn.zoo.checkpoint import load_checkpoint

        model, name, kwargs, info = load_checkpoint(arg)
        meta = {k: info[k] for k in ("dataset", "metrics", "baseline_metrics", "recipe")
                if k in info}
        return Source(model, (name, kwargs), meta, {"zoo": {"name": name, "kwargs": kwargs}})

    def compress(self, a: argparse.Namespace) -> None:
        from compactnn import train
        from compactnn.transforms import check_recipe, compress_
        from compactnn.zoo.checkpoint import load_checkpoint, save_checkpoint

        model, name, kwargs, _ = load_checkpoint(a.checkpoint)
        steps = recipe(a.recipe)
        tr, te = dataset(a.dataset, a.data, model=model)
        check_recipe(steps, model, tr)
        run = {"device": a.device, "autocast": a.autocast, "num_workers": a.num_workers}
        before = train.evaluate(model, te, **run)
        report = compress_(model, steps, tr, te, progress=writes(), **run)
        if not writes():  # torchrun: rank 0 writes
            return
        after = train.evaluate(model, te, **run)
        print(report.table())
        save_checkpoint(model, a.output, name, kwargs, dataset=a.dataset, metrics=after,
                        baseline_metrics=before, recipe=steps.to_list())
        print(f"before: {fmt_metrics(before)}; after: {fmt_metrics(after)}")
        print(f"wrote {a.output}")

    def timing(self, src: Source, batch_size: int) -> tuple[int, Any]:
        name = src.meta.get("dataset")
        if not name:
            return batch_size, None
        _, te = dataset(name, None)
        return batch_size, te.tensors[0][:batch_size]

    def evaluate(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        from compactnn import train

        _, te = dataset(a.dataset, a.data, info.metadata.get("dataset"), model)
        q = train.evaluate(model, te, num_workers=a.num_workers)
        return f"{a.file}: {fmt_metrics(q)} on {len(te)} test inputs"

    def bench(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        import torch

        from compactnn.bench import threads
        from compactnn.bench.compare import compare, format_rows
        from compactnn.nn import to_dense
        from compactnn.train.checkpoint import dense_file_bytes

        if model is None:
            raise UserError(f"{a.file}: bench takes a compact file")
        dense = to_dense(model)
        _, te = dataset(a.dataset, a.data, info.metadata.get("dataset"), model)
        dense_bytes = int(info.metadata.get("dense_bytes") or dense_file_bytes(dense))
        n = threads_of(a)
        with threads(n), torch.no_grad():
            rows = compare([("dense float32", dense, dense_bytes),
                            ("compact", model, info.file_bytes)], te, a.batch_sizes)
        return format_rows(rows) + f"\n(median of repeated runs, {n} thread(s))"


KIND = ZooKind()
