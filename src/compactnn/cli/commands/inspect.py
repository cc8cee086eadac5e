"""``compactnn inspect``: the per-layer table of a compact file (or of a named model,
by its kind: ``inspect minilm``)."""

from __future__ import annotations

import argparse
import json

from compactnn.cli.registry import Command, register


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="compact file, or minilm (the original model's layers)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--check", action="store_true", help="also validate every array (what "
                   "load does: format checks, archive decoding, finite plain tensors)")


def _model_line(model: dict) -> str:
    if model.get("zoo"):
        return f"model: zoo {model['zoo']['name']} {json.dumps(model['zoo']['kwargs'])}"
    if model.get("hf"):
        hf = model["hf"]
        return (f"model: Hugging Face {hf['architecture']} ({hf['auto']}, model type "
                f"{hf['config'].get('model_type')}); files: {', '.join(hf['files']) or '-'}")
    return f"model: {model['class']} (load with a skeleton)"


def run(a: argparse.Namespace) -> None:
    from dataclasses import asdict

    from compactnn.cli import models
    from compactnn.io import inspect

    kind = None if a.json else models.named(a.file)
    text = kind.describe(a.file) if kind is not None else None
    if text is not None:
        print(text)
        return
    info = inspect(a.file, check=a.check)
    if a.json:
        print(json.dumps(asdict(info), indent=1, sort_keys=True))
        return
    print(info.table())
    print("validated: every array (--check)" if info.validated == "arrays" else
          "validated: checksums and description only; --check validates every array")
    print(_model_line(info.model))
    for k, v in sorted(info.metadata.items()):
        if k != "recipe":
            print(f"{k}: {json.dumps(v)}")


register(Command("inspect", "per-layer table of a compact file",
                 "Show each layer's format, shape, bytes, bits per weight, entropy bound and "
                 "share of the file.", arguments, run))
