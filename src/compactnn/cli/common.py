"""Argument types and helpers shared by several commands: batch sizes, policies,
``--data`` / ``--threads`` options, output checks, recipes by name or file, metrics."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from compactnn.errors import PathError, UserError

__all__ = ["positive_int", "count", "positive_float", "batch_sizes", "policy", "add_data",
           "add_workers", "add_max_length", "add_threads", "threads_of", "check_output", "recipe",
           "fmt_metrics"]


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, threads, repeats)."""
    return _number(text, int, 1, "an integer >= 1")


def count(text: str) -> int:
    """An integer >= 0 (epochs)."""
    return _number(text, int, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    v = _number(text, float, 0.0, "a number > 0")
    if v == 0.0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return v


def _number(text: str, kind: type, lo: float, what: str) -> Any:
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def batch_sizes(text: str) -> list[int]:
    """``--batch-sizes 1,256``."""
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


def policy(text: str) -> Any:
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


def add_data(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--dataset`` and ``--data``."""
    p.add_argument("--dataset", required=required,
                   help="dataset name (fashion-mnist, mnist, cifar10, digits, diabetes)")
    p.add_argument("--data", metavar="PATH", help="folder holding the dataset files; without "
                   "--dataset: a folder of images in class subfolders (train/ and test/ "
                   "inside, or split 75/25) or a .npz (x, y or x_train ... y_test); for a "
                   "Hugging Face model: a text file (one sample per line), .npy/.npz pixel "
                   "values or an image folder")


def add_workers(p: argparse.ArgumentParser) -> None:
    """``--num-workers`` (``DataLoader`` workers while training, calibrating, evaluating)."""
    p.add_argument("--num-workers", type=count, default=0, metavar="N",
                   help="DataLoader worker processes that read and decode samples from "
                   "disk (image folders) while training and evaluating (default 0: in the "
                   "main process; in-memory arrays and text need none)")


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--autocast`` (where fitting, fine-tuning, calibration and
    distillation run; compact layers and saving stay on the CPU)."""
    p.add_argument("--device", default=None, help="where fit / fine-tune / calibrate / "
                   "distill run: cpu, cuda, cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--autocast", choices=("bf16", "fp16", "none"), default="none",
                   help="forward passes under torch.autocast in this precision (default none)")


def device_of(a: argparse.Namespace) -> str:
    """``--device`` checked (one-line ``UserError`` for an unknown one or CUDA without a
    GPU), or the best available device when it was not given."""
    import torch

    from compactnn.train.device import best_device

    if a.device is None:
        return best_device()
    try:
        dev = torch.device(a.device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {a.device!r}: unknown device (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {a.device}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {a.device}: only cpu and cuda are supported")
    return str(dev)


def add_max_length(p: argparse.ArgumentParser) -> None:
    """``--max-length`` (Hugging Face text models)."""
    p.add_argument("--max-length", type=positive_int, default=128,
                   help="Hugging Face text models: tokens per sample at most (default 128)")


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads``."""
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for torch, the kernels, numba and BLAS while timing "
                   "(default: torch's default, what a user gets)")


def threads_of(a: argparse.Namespace) -> int:
    """``--threads``, or torch's default thread count when it was not given."""
    if a.threads is not None:
        return a.threads
    import torch

    return torch.get_num_threads()


def check_output(path: str, *inputs: str | None) -> None:
    """Before any work: the output is not one of the inputs (same file by inode) and
    its folder accepts a new file (``PathError`` otherwise)."""
    from compactnn.io.files import check_writable, same_file

    for src in inputs:
        if src and same_file(src, path):
            raise UserError(f"output {path} is the input file {src}; choose another name")
    check_writable(path)


def writes() -> bool:
    """Whether this process prints and writes the output: the only one, or rank 0 of a
    ``torchrun`` run (the installed ``transforms.parallel.Parallel``)."""
    from compactnn.transforms import parallel

    return parallel.current().rank == 0


def recipe(text: str) -> Any:
    """A built-in recipe by name (``compactnn.zoo.presets.RECIPES``) or a recipe file
    (YAML or JSON); ``RecipeError`` for anything else."""
    from compactnn.transforms import Recipe, RecipeError, load_recipe
    from compactnn.zoo.presets import RECIPES

    if text in RECIPES:
        return Recipe.from_list(RECIPES[text])
    if not os.path.exists(text):
        raise RecipeError(f"recipe {text!r} is neither a file nor a built-in recipe "
                          f"({', '.join(RECIPES)})")
    try:
        return load_recipe(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"recipe {text}: not valid JSON ({exc})") from None
    except OSError as exc:  # the user's path: a folder, no permission
        raise PathError(exc.errno, f"recipe {text}: cannot read ({exc.strerror})") from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise RecipeError(f"recipe {text}: not valid YAML ({str(exc).splitlines()[0]})") \
                from None
        raise


def fmt_metrics(m: dict[str, float]) -> str:
    """``accuracy 97.10%`` (the loss left out), ``mse 0.0123``, ``accuracy 50.00%,
    reference_accuracy 50.00%, cosine 0.9912``: accuracies as percentages."""
    return ", ".join(f"{k} {100 * v:.2f}%" if k.endswith("accuracy") else f"{k} {v:.4f}"
                     for k, v in m.items() if not (k == "loss" and "accuracy" in m))
