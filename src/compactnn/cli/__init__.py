"""The ``compactnn`` command line: thin subcommands over the library.

``train`` a zoo model on a dataset, ``compress`` it with a recipe (fine-tuning
included), ``convert`` it to a compact file with a policy, ``inspect`` the file,
``eval`` it, ``bench`` it against its dense twin, write an HTML ``report``, or run the
whole ``demo``. Every user error prints one line on stderr and exits with status 2;
outputs are written atomically, so a failed command leaves no partial file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from compactnn import _early_interrupt
from compactnn.cli import anymodel, minilm

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


def _policy(text: str) -> Any:
    """A policy name, a format id, or ``layer=format,layer=format``."""
    if "=" not in text:
        return text
    out = {}
    for part in text.split(","):
        name, sep, fid = part.partition("=")
        if not sep or not name or not fid:
            raise argparse.ArgumentTypeError(f"expected layer=format pairs, got {part!r}")
        out[name.strip()] = fid.strip()
    return out


def _add_data(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--dataset", required=required,
                   help="dataset name (fashion-mnist, mnist, cifar10, digits, diabetes)")
    p.add_argument("--data", metavar="PATH", help="folder holding the dataset files; for a "
                   "Hugging Face model: a text file (one sample per line) or .npy/.npz pixel "
                   "values")


def _add_max_length(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-length", type=int, default=128,
                   help="Hugging Face text models: tokens per sample at most (default 128)")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="threads for torch, the kernels, numba and BLAS while timing "
                   "(default: torch's default, what a user gets)")


def _threads_of(a: argparse.Namespace) -> int:
    """``--threads``, or torch's default thread count when it was not given."""
    if a.threads is not None:
        return a.threads
    import torch

    return torch.get_num_threads()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="compactnn", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")

    p = sub.add_parser("train", help="train a zoo model on a dataset",
                       description="Train a zoo model on a dataset and save a checkpoint.")
    p.add_argument("--model", required=True, help="zoo model (lenet300, lenet5, vgg_small, mlp)")
    _add_data(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="checkpoint to write (.safetensors)")

    p = sub.add_parser("compress", help="apply a compression recipe with fine-tuning",
                       description="Prune / weight-share a trained checkpoint with a recipe "
                       "(YAML/JSON file or a built-in name) and fine-tune it.")
    p.add_argument("checkpoint", help="checkpoint written by `compactnn train`, a Hugging "
                   "Face model folder (config.json + safetensors + tokenizer files), or minilm "
                   "(the pretrained all-MiniLM-L6-v2, distilled on real text)")
    p.add_argument("--recipe", required=True,
                   help="recipe file (.yaml/.yml/.json) or built-in name (lenet300, demo, minilm)")
    _add_data(p, required=False)
    p.add_argument("--embedding-k", type=int, help="minilm: share the word embeddings with "
                   "K values and pack them (default: keep them float32)")
    p.add_argument("--sentences", type=int, default=3000,
                   help="minilm: calibration/distillation samples (real text)")
    _add_max_length(p)
    p.add_argument("-o", "--output", required=True, help="compressed checkpoint to write")

    p = sub.add_parser("convert", help="convert a checkpoint to a compact file",
                       description="Store every Linear/Conv2d in the format a policy picks "
                       "and write one compact file.")
    p.add_argument("checkpoint", help="(compressed) checkpoint, or a Hugging Face model "
                   "folder or compressed file")
    p.add_argument("--policy", type=_policy, default="smallest",
                   help="smallest, fastest, energy, a format id, or layer=format,...")
    p.add_argument("--storage", default="auto", choices=["auto", "raw", "archive"],
                   help="store runtime arrays (raw), entropy-coded archives decoded at load, "
                   "or whichever is smaller (auto)")
    p.add_argument("--pack", action="store_true",
                   help="packed layout: compressed description and entropy-coded biases "
                   "(smallest file; one opaque tensor for other safetensors readers)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="batch size the 'fastest' policy measures at")
    p.add_argument("--formats", type=lambda t: [f.strip() for f in t.split(",") if f.strip()],
                   default=None, help="comma-separated formats the policy may choose from "
                   "(default: all registered)")
    p.add_argument("--formats-from", metavar="FILE", help="use the per-layer formats of an "
                   "earlier compact file (e.g. one written with --policy fastest: its timings "
                   "are recorded in it and copied over), instead of --policy")
    p.add_argument("-o", "--output", required=True, help="compact file to write (.cnn)")

    p = sub.add_parser("inspect", help="per-layer table of a compact file",
                       description="Show each layer's format, shape, bytes, bits per weight, "
                       "entropy bound and share of the file.")
    p.add_argument("file", help="compact file, or minilm (the original model's layers)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--check", action="store_true", help="also validate every array (what "
                   "load does: format checks, archive decoding, finite plain tensors)")

    p = sub.add_parser("eval", help="accuracy or MSE of a compact file",
                       description="Evaluate a compact file on a dataset's test split "
                       "(default: the dataset recorded in the file).")
    p.add_argument("file")
    _add_data(p, required=False)
    _add_max_length(p)
    p.add_argument("--reference", metavar="DIR", help="Hugging Face models: the original "
                   "model folder to measure agreement with (default: the folder recorded "
                   "by compress, if it still exists)")

    p = sub.add_parser("bench", help="compact vs dense latency and throughput",
                       description="Time the compact model against its dense twin "
                       "(decoded float32 weights) at several batch sizes.")
    p.add_argument("file", help="compact file, or minilm (the original model alone)")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 256])
    _add_data(p, required=False)
    _add_max_length(p)
    _add_threads(p)

    p = sub.add_parser("report", help="HTML report with tables and plots",
                       description="Write an HTML page: baseline vs compact, layer table, "
                       "size per layer and format, time per format, accuracy vs size.")
    p.add_argument("file")
    p.add_argument("--baseline", help="dense checkpoint to compare against")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=[1, 256])
    p.add_argument("--repeats", type=int, default=15, help="timed runs per measurement")
    _add_data(p, required=False)
    _add_threads(p)
    p.add_argument("-o", "--output", required=True, help="HTML file to write")

    p = sub.add_parser("demo", help="the README demo, end to end",
                       description="Train LeNet-300-100 on Fashion-MNIST (or scikit-learn "
                       "digits when it is not available), prune and weight-share it, convert "
                       "it with policy 'smallest', save, reload, evaluate, compare with the "
                       "baseline and write an HTML report.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--epochs", type=int, default=3, help="baseline training epochs")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset (default fashion-mnist)")
    p.add_argument("--data", metavar="DIR", help="folder holding the dataset files")
    p.add_argument("--no-install", action="store_true",
                   help="do not try to install Debian's dataset-fashion-mnist when missing")
    _add_threads(p)
    return parser


def _dataset(name: str | None, data_dir: str | None, fallback: str | None = None,
             model=None):
    """The dataset's (train, test) splits; with ``model``, checked to fit its inputs
    first (one test sample), so a mismatch is one line, not a traceback mid-run."""
    from compactnn import zoo

    name = name or fallback
    if not name:
        raise ValueError("no dataset given and none recorded in the file; pass --dataset")
    tr, te = zoo.load_dataset(name, data_dir)
    if model is not None and len(te):
        import torch

        x = te[0][0][None]
        try:
            with torch.no_grad():
                model(x)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"the model does not take {name}'s inputs (shape "
                             f"{tuple(x.shape[1:])}): {first}") from None
    return tr, te


def _check_output(path: str, *inputs: str | None) -> None:
    """Before any work: the output is not one of the inputs (same file by inode) and
    its folder accepts a new file."""
    from compactnn.io.container import check_writable, same_file

    for src in inputs:
        if src and same_file(src, path):
            raise ValueError(f"output {path} is the input file {src}; choose another name")
    check_writable(path)


def _cmd_train(a: argparse.Namespace) -> None:
    import torch

    from compactnn import train, zoo
    from compactnn.bench import pipeline

    _check_output(a.output)
    tr, te = _dataset(a.dataset, a.data)
    kwargs = pipeline.model_kwargs(a.model, tr)
    torch.manual_seed(a.seed)
    model = zoo.build(a.model, **kwargs)
    train.fit(model, tr, a.epochs, a.lr, a.batch_size, a.seed, progress=True)
    metrics = train.evaluate(model, te)
    pipeline.save_checkpoint(model, a.output, a.model, kwargs, dataset=a.dataset,
                             metrics=metrics)
    print(f"trained {a.model} on {a.dataset}: " + _fmt_metrics(metrics))
    print(f"wrote {a.output} ({os.path.getsize(a.output)} bytes)")


def _recipe(text: str):
    from compactnn.bench.pipeline import RECIPES
    from compactnn.transforms import Recipe, RecipeError, load_recipe

    if text in RECIPES:
        return Recipe.from_list(RECIPES[text])
    if not os.path.exists(text):
        raise RecipeError(f"recipe {text!r} is neither a file nor a built-in recipe "
                          f"({', '.join(RECIPES)})")
    try:
        return load_recipe(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"recipe {text}: not valid JSON ({exc})") from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise RecipeError(f"recipe {text}: not valid YAML ({str(exc).splitlines()[0]})") \
                from None
        raise


def _cmd_compress(a: argparse.Namespace) -> None:
    from compactnn import train
    from compactnn.bench import pipeline
    from compactnn.transforms import check_recipe, compress_

    _check_output(a.output, a.checkpoint, a.recipe)
    if minilm.is_minilm(a.checkpoint):
        q = minilm.compress(None if a.recipe == "minilm" else _recipe(a.recipe), a.output,
                            embedding_k=a.embedding_k, sentences=a.sentences)
        print(f"vs the original, per held-out corpus:\n{minilm.format_quality(q)}")
        print(f"wrote {a.output}")
        return
    from compactnn.zoo.hf import is_hf_dir

    if is_hf_dir(a.checkpoint):
        anymodel.compress(a.checkpoint, _recipe(a.recipe), a.data, a.output,
                          max_length=a.max_length)
        return
    model, name, kwargs, info = pipeline.load_checkpoint(a.checkpoint)
    recipe = _recipe(a.recipe)
    tr, te = _dataset(a.dataset, a.data, model=model)
    check_recipe(recipe, model, tr)
    before = train.evaluate(model, te)
    report = compress_(model, recipe, tr, te, progress=True)
    after = train.evaluate(model, te)
    print(report.table())
    pipeline.save_checkpoint(model, a.output, name, kwargs, dataset=a.dataset,
                             metrics=after, baseline_metrics=before,
                             recipe=recipe.to_list())
    print(f"before: {_fmt_metrics(before)}; after: {_fmt_metrics(after)}")
    print(f"wrote {a.output}")


def _cmd_convert(a: argparse.Namespace) -> None:
    from compactnn import save, to_compact
    from compactnn.bench import pipeline

    _check_output(a.output, a.checkpoint, a.formats_from)
    replayed = None
    if a.formats_from:
        from compactnn.io import inspect as inspect_file

        earlier = inspect_file(a.formats_from)
        a.policy = {li.name: li.format for li in earlier.layers}
        replayed = earlier.metadata.get("fastest")
    if anymodel.is_hf_input(a.checkpoint):
        _convert_hf(a, replayed)
        return
    model, name, kwargs, info = (minilm.pretrained() if minilm.is_minilm(a.checkpoint)
                                 else pipeline.load_checkpoint(a.checkpoint))
    example = None
    batch_size = a.batch_size
    if name == "minilm" and (a.policy == "fastest" or isinstance(a.policy, dict)):
        batch_size = minilm.columns(a.batch_size)  # sentences x tokens per product
    elif a.policy == "fastest" or isinstance(a.policy, dict):
        dataset = info.get("dataset")
        if dataset:
            _, te = _dataset(dataset, None)
            example = te.tensors[0][:a.batch_size]
    cm = to_compact(model, a.policy, storage=a.storage, batch_size=batch_size,
                    example_input=example, progress=True, candidates=a.formats)
    meta = {k: info[k] for k in ("dataset", "metrics", "baseline_metrics", "recipe")
            if k in info}
    meta["dense_bytes"] = (minilm.original_bytes() if name == "minilm"
                           else pipeline.dense_file_bytes(model))
    if a.policy == "fastest":
        from compactnn.nn import layer_records

        meta["fastest"] = {"batch_size": batch_size, "layers": {
            r.name: {"format": r.format, "seconds": {f: float(f"{t:.3g}")
                                                     for f, t in sorted(r.times.items())}}
            for r in layer_records(cm) if r.times}}
    elif replayed is not None:
        meta["fastest"] = replayed
    size = save(cm, a.output, zoo=(name, kwargs), metadata=meta, pack=a.pack)
    from compactnn.io import inspect

    print(inspect(a.output).table())
    print(f"wrote {a.output}: {size} bytes, {meta['dense_bytes'] / size:.1f}x smaller than "
          f"the float32 checkpoint ({meta['dense_bytes']} bytes)")


def _convert_hf(a: argparse.Namespace, replayed: Any) -> None:
    from compactnn import save, to_compact
    from compactnn.io import inspect

    model, info = anymodel.load_dense(a.checkpoint)
    cm = to_compact(model, a.policy, storage=a.storage, batch_size=a.batch_size,
                    progress=True, candidates=a.formats)
    meta = {k: info[k] for k in ("source", "recipe", "task", "samples", "dense_bytes")
            if k in info}
    meta.setdefault("dense_bytes", sum(t.numel() * t.element_size()
                                       for t in model.state_dict().values()))
    if replayed is not None:
        meta["fastest"] = replayed
    size = save(cm, a.output, metadata=meta)
    print(inspect(a.output).table())
    print(f"wrote {a.output}: {size} bytes, {meta['dense_bytes'] / size:.1f}x smaller than "
          f"the float32 weights ({meta['dense_bytes']} bytes)")


def _cmd_inspect(a: argparse.Namespace) -> None:
    from dataclasses import asdict

    from compactnn.io import inspect

    if minilm.is_minilm(a.file) and not a.json:
        print(minilm.describe())
        return
    info = inspect(a.file, check=a.check)
    if a.json:
        print(json.dumps(asdict(info), indent=1, sort_keys=True))
        return
    print(info.table())
    print("validated: every array (--check)" if info.validated == "arrays" else
          "validated: checksums and description only; --check validates every array")
    if info.model.get("zoo"):
        print(f"model: zoo {info.model['zoo']['name']} {json.dumps(info.model['zoo']['kwargs'])}")
    elif info.model.get("hf"):
        hf = info.model["hf"]
        print(f"model: Hugging Face {hf['architecture']} ({hf['auto']}, model type "
              f"{hf['config'].get('model_type')}); files: {', '.join(hf['files']) or '-'}")
    else:
        print(f"model: {info.model['class']} (load with a skeleton)")
    for k, v in sorted(info.metadata.items()):
        if k != "recipe":
            print(f"{k}: {json.dumps(v)}")


def _load_compact(path: str):
    from compactnn.io import CompactFileError, inspect, load

    info = inspect(path)
    if not info.model.get("zoo"):
        raise CompactFileError(f"{path}: holds a custom model ({info.model['class']}); the "
                               "CLI can only rebuild zoo models (use compactnn.load in Python)")
    return load(path), info


def _cmd_eval(a: argparse.Namespace) -> None:
    from compactnn import train

    if anymodel.is_hf_input(a.file):
        q = anymodel.evaluate(a.file, a.data, a.reference, a.max_length)
        print(f"{a.file}: {_fmt_metrics(q)} on {a.data}")
        return
    model, info = _load_compact(a.file)
    if info.model["zoo"]["name"] == "minilm":
        print(f"{a.file} vs the original, per held-out corpus:\n"
              f"{minilm.format_quality(minilm.evaluate(model))}")
        return
    _, te = _dataset(a.dataset, a.data, info.metadata.get("dataset"), model)
    metrics = train.evaluate(model, te)
    print(f"{a.file}: {_fmt_metrics(metrics)} on {len(te)} test inputs")


def _cmd_bench(a: argparse.Namespace) -> None:
    import torch

    from compactnn.bench import pipeline, threads
    from compactnn.kernels import backend
    from compactnn.nn import to_dense

    a.threads = _threads_of(a)
    print(backend.describe())

    if minilm.is_minilm(a.file):
        print(minilm.bench(None, None, a.batch_sizes, a.threads))
        return
    if anymodel.is_hf_input(a.file):
        print(anymodel.bench(a.file, a.data, a.batch_sizes, a.threads, a.max_length))
        return
    model, info = _load_compact(a.file)
    if info.model["zoo"]["name"] == "minilm":
        print(minilm.bench(model, info.file_bytes, a.batch_sizes, a.threads))
        return
    dense = to_dense(model)
    _, te = _dataset(a.dataset, a.data, info.metadata.get("dataset"), model)
    dense_bytes = int(info.metadata.get("dense_bytes") or pipeline.dense_file_bytes(dense))
    with threads(a.threads), torch.no_grad():
        rows = pipeline.compare([("dense float32", dense, dense_bytes),
                                 ("compact", model, info.file_bytes)], te, a.batch_sizes)
    print(pipeline.format_rows(rows))
    print(f"(median of repeated runs, {a.threads} thread(s))")


def _cmd_report(a: argparse.Namespace) -> None:
    from compactnn.bench import pipeline, threads
    from compactnn.report import collect, write_report

    _check_output(a.output, a.file, a.baseline)
    model, info = _load_compact(a.file)
    _, te = _dataset(a.dataset, a.data, info.metadata.get("dataset"), model)
    baseline = baseline_bytes = None
    if a.baseline:
        baseline, *_ = pipeline.load_checkpoint(a.baseline)
        baseline_bytes = pipeline.dense_file_bytes(baseline)
    with threads(_threads_of(a)):
        data = collect(a.file, te, baseline=baseline, baseline_bytes=baseline_bytes,
                       batch_sizes=a.batch_sizes, repeats=a.repeats)
    write_report(data, a.output)
    print(f"wrote {a.output}")


def _cmd_demo(a: argparse.Namespace) -> None:
    from compactnn.cli.demo import run_demo

    run_demo(a.out, epochs=a.epochs, dataset=a.dataset, data_dir=a.data,
             install=not a.no_install, n_threads=_threads_of(a))


def _fmt_metrics(m: dict[str, float]) -> str:
    if "accuracy" in m:
        return f"accuracy {100 * m['accuracy']:.2f}%"
    return ", ".join(f"{k} {v:.4f}" for k, v in m.items())


COMMANDS = {"train": _cmd_train, "compress": _cmd_compress, "convert": _cmd_convert,
            "inspect": _cmd_inspect, "eval": _cmd_eval, "bench": _cmd_bench,
            "report": _cmd_report, "demo": _cmd_demo}


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (0, 2 on a user error, 130 when
    interrupted with Ctrl-C, at any moment)."""
    command = "compactnn"
    if signal.getsignal(signal.SIGINT) is _early_interrupt:
        signal.signal(signal.SIGINT, _on_interrupt)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        command = f"compactnn {args.command}"
        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _interrupted(command)
        return 130
    except (ValueError, TypeError, OSError, KeyError, MemoryError, RecursionError) as exc:
        try:
            sys.stderr.write(f"{command}: error: {_message(exc)}\n")
        except KeyboardInterrupt:
            return 130
        return EXIT_USAGE
    return 0


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C: KeyboardInterrupt (so ``finally`` blocks remove temporary files), except
    while a module is being imported: an exception raised there can land inside an
    extension's C++ initialisation (torch's pybind11) and abort the process, and an
    import has written nothing, so the process exits at once with one line and 130."""
    f = frame
    while f is not None:
        if f.f_code.co_filename.startswith("<frozen importlib"):
            _early_interrupt(signum, frame)
        f = f.f_back
    raise KeyboardInterrupt


def _interrupted(command: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot interrupt this
    sys.stderr.write(f"{command}: interrupted\n")
