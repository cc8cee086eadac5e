"""The Hugging Face kind of the ``compactnn`` commands (any local model folder, or a
file whose model entry is ``hf``).

- ``compactnn compress ./hf-model --recipe r.yaml --data samples.txt -o dense.cnn``:
  the folder's model (:func:`compactnn.zoo.hf.read_dir`), the recipe on its
  ``nn.Linear`` / ``nn.Conv2d`` layers (named as in the model: ``transformer.h.0.attn
  .c_attn``; patterns such as ``*.mlp.*`` work too), calibration (``calibrate: n``)
  on the first samples of ``--data`` (a text file, one sample per line, or a
  ``.npy`` / ``.npz`` array of pixel values for image models) and ``finetune`` steps
  that distil the original model's last hidden states on them. Writes a compact file
  of the constrained dense model (config and tokenizer files included), which
  ``convert`` reads.
- ``convert`` takes that file or a model folder; ``inspect`` the result as any file.
- ``eval file.cnn --data samples``: perplexity for causal LMs, accuracy for sequence /
  image classifiers when the data has labels (``label<TAB>text`` lines, an image
  folder's classes, a ``.npz``'s ``labels``), and with ``--reference``
  (the original folder; default: the folder recorded at ``compress`` when it still
  exists) the agreement with the original model (mean cosine of the last hidden
  states, top-1 agreement of the logits).
- ``bench file.cnn --data samples``: samples per second of the compact model and its
  dense twin at each batch size.

Every check (folder, architecture, recipe layers, data file) runs before any
compression work.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

from compactnn.cli.common import fmt_metrics, recipe, threads_of, writes
from compactnn.cli.models import Kind, Source
from compactnn.errors import UserError

__all__ = ["KIND", "HFKind", "is_hf_file", "compress", "load_dense", "evaluate", "bench",
           "prefixed"]


def is_hf_file(path: str) -> bool:
    """A compact file that holds a Hugging Face model."""
    if not os.path.isfile(path):
        return False
    from compactnn.io import CompactFileError, inspect

    try:
        return inspect(path).model.get("hf") is not None
    except CompactFileError:
        return False


def prefixed(recipe: Any, prefix: str = "model.") -> Any:
    """The recipe with its layer names and override keys seen through
    :class:`~compactnn.zoo.hf_task.TaskView` (``prefix`` added; patterns starting
    with ``*`` already match)."""
    from compactnn.transforms import Recipe

    def name(n: str) -> str:
        return n if n.startswith("*") else prefix + n

    steps = []
    for s in recipe.to_list():
        if "layers" in s:
            s["layers"] = [name(n) for n in s["layers"]]
        if "overrides" in s:
            s["overrides"] = {name(n): v for n, v in s["overrides"].items()}
        steps.append(s)
    return Recipe.from_list(steps)


def load_dense(path: str) -> tuple[Any, dict[str, Any]]:
    """``(model, metadata)`` of a model folder or a compact file of a Hugging Face model."""
    from compactnn.io import inspect, load
    from compactnn.zoo import hf

    if hf.is_hf_dir(path):
        return hf.read_dir(path), {"source": os.path.abspath(path)}
    return load(path), dict(inspect(path).metadata)


def compress(folder: str, recipe: Any, data: str | None, output: str, *,
             max_length: int = 128, progress: bool = True, device: str | None = None,
             autocast: str | None = None, seed: int = 0) -> None:
    """``compactnn compress`` for a model folder (see the module docstring); the
    distillation targets, calibration and fine-tuning run on ``device`` under
    ``autocast``, the model is back on the CPU before it is saved. ``seed`` seeds
    torch's generators for the recipe (the model's dropout while distilling), so the
    same seed writes the same file; the caller's generator state is restored after."""
    import torch
    from torch.utils.data import TensorDataset

    from compactnn.io import save
    from compactnn.transforms import CompressionReport, RecipeError, check_recipe, compress_
    from compactnn.zoo import hf, hf_task

    if data is None:
        raise UserError("compressing a Hugging Face model needs --data (a text file, one "
                        "sample per line, or .npy/.npz pixel values)")
    model = hf.read_dir(folder)
    view = hf_task.TaskView(model).eval()
    recipe = prefixed(recipe)
    x = hf_task.inputs_for(model, data, max_length)
    try:  # layer names, order and data needs, before any model runs
        check_recipe(recipe, view, TensorDataset(x[:1], x[:1]))
    except RecipeError as exc:  # name the layers as the user does
        raise RecipeError(str(exc).replace("'model.", "'").replace(" model.", " ")) from None
    run = {"device": device, "autocast": autocast}
    ds = hf_task.distillation_data(model, x, **run)  # finetune steps distil these outputs
    with torch.random.fork_rng(), hf_task.checkpointed(model):
        torch.manual_seed(seed)
        report = compress_(view, recipe, ds, progress=progress and writes(), **run)
    if not writes():  # torchrun: rank 0 writes
        return
    model.eval()
    report = CompressionReport(tuple(dataclasses.replace(s, name=s.name.removeprefix("model."))
                                     for s in report.layers), report.history)
    print(report.table())
    meta = {"source": os.path.abspath(folder), "recipe": recipe.to_list(),
            "samples": len(x), "task": hf.task_of(model),
            "dense_bytes": sum(t.numel() * t.element_size()
                               for t in model.state_dict().values())}
    size = save(model, output, metadata=meta)
    print(f"wrote {output}: {size} bytes ({hf.task_of(model)}, {len(x)} samples from {data})")


def _reference(file_meta: dict[str, Any], reference: str | None) -> Any:
    from compactnn.zoo import hf

    path = reference or file_meta.get("source")
    if path and Path(path).is_dir() and hf.is_hf_dir(path):
        return hf.read_dir(path)
    if reference:
        raise UserError(f"{reference}: not a Hugging Face model folder")
    return None


def evaluate(model: Any, metadata: dict[str, Any], data: str | None,
             reference: str | None = None, max_length: int = 128) -> dict[str, float]:
    """``compactnn eval`` for a Hugging Face model loaded from a compact file (its
    ``metadata`` names the folder it was compressed from)."""
    from compactnn.zoo import hf, hf_task

    if data is None:
        raise UserError("evaluating a Hugging Face model needs --data (text file or "
                        ".npy/.npz pixel values)")
    x, labels = hf_task.labelled_inputs(model, data, max_length)
    out: dict[str, float] = {}
    if hf.task_of(model) == "causal-lm":
        out["perplexity"] = hf_task.perplexity(model, x)
    classify = hf.is_classifier(model) and labels is not None
    if classify:
        out["accuracy"] = hf_task.accuracy(model, x, labels)
    ref = _reference(metadata, reference)
    if ref is not None:
        if classify:
            out["reference_accuracy"] = hf_task.accuracy(ref, x, labels)
        out.update(hf_task.agreement(model, ref, x))
        if hf.task_of(model) == "causal-lm":
            out["reference_perplexity"] = hf_task.perplexity(ref, x)
    if not out:
        raise UserError("no metric for this model without the original: pass --reference "
                        "FOLDER (the model folder it was compressed from)")
    return out


def bench(model: Any, info: Any, data: str | None, batch_sizes: list[int], n_threads: int,
          max_length: int = 128, repeats: int = 5) -> str:
    """Samples/s of the compact model and its dense twin (decoded float32 weights)."""
    import torch

    from compactnn.bench import model_latency, threads
    from compactnn.bench.compare import batch_of, text_table
    from compactnn.nn import to_dense
    from compactnn.zoo import hf_task

    if data is None:
        raise UserError("benchmarking a Hugging Face model needs --data")
    x = hf_task.inputs_for(model, data, max_length)
    rows = [("model", "file bytes") + tuple(f"b={b} (samples/s)" for b in batch_sizes)]
    dense_bytes = info.metadata.get("dense_bytes")
    with threads(n_threads), torch.inference_mode():
        for label, m, size in (("dense twin (decoded weights)", to_dense(model), dense_bytes),
                               ("compact", model, info.file_bytes)):
            view = hf_task.TaskView(m).eval()
            rates = [b / model_latency(view, batch_of(x, b), repeats, warmup=1).median
                     for b in batch_sizes]
            rows.append((label, "-" if size is None else str(size))
                        + tuple(f"{r:.2f}" for r in rates))
    return text_table(rows) + (f"\n(inputs of {tuple(x.shape[1:])}, median of {repeats} runs, "
                               f"{n_threads} thread(s))")


class HFKind(Kind):
    """A Hugging Face model: a folder (config.json + safetensors + tokenizer files) or a
    compact file of one; its data is ``--data`` (text lines or pixel values)."""

    name = "hf"
    baseline = "weights"

    def names(self, arg: str) -> bool:
        from compactnn.zoo.hf import is_hf_dir

        return is_hf_dir(arg)

    def holds(self, entry: dict[str, Any]) -> bool:
        return entry.get("hf") is not None

    def source(self, arg: str) -> Source | None:
        if not (self.names(arg) or is_hf_file(arg)):
            return None
        model, info = load_dense(arg)
        meta = {k: info[k] for k in ("source", "recipe", "task", "samples", "dense_bytes")
                if k in info}
        return Source(model, None, meta, {"hf": model.hf_spec})

    def compress(self, a: argparse.Namespace) -> None:
        compress(a.checkpoint, recipe(a.recipe), a.data, a.output, max_length=a.max_length,
                 device=a.device, autocast=a.autocast, seed=a.seed)

    def dense_bytes(self, src: Source) -> int:
        return int(src.meta.get("dense_bytes") or sum(
            t.numel() * t.element_size() for t in src.model.state_dict().values()))

    def evaluate(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        q = evaluate(model, info.metadata, a.data, a.reference, a.max_length)
        return f"{a.file}: {fmt_metrics(q)} on {a.data}"

    def bench(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        if model is None:
            raise UserError(f"{a.file}: bench takes a compact file (convert the folder first)")
        return bench(model, info, a.data, a.batch_sizes, threads_of(a), a.max_length)


KIND = HFKind()
