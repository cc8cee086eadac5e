"""``compactnn convert``: store every Linear/Conv2d of a dense model in the format a
policy picks and write one compact file; the input's model kind (``compactnn.cli
.models``) says how policy ``fastest`` times a layer and what the float32 baseline is."""

from __future__ import annotations

import argparse

from compactnn.cli.common import check_output, policy, positive_int
from compactnn.cli.registry import Command, register


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="(compressed) checkpoint, or a Hugging Face model "
                   "folder or compressed file")
    p.add_argument("--policy", type=policy, default="smallest",
                   help="smallest, fastest, energy, a format id, or layer=format,...")
    p.add_argument("--storage", default="auto", choices=["auto", "raw", "archive"],
                   help="store runtime arrays (raw), entropy-coded archives decoded at load, "
                   "or whichever is smaller (auto)")
    p.add_argument("--pack", action="store_true",
                   help="packed layout: compressed description and entropy-coded biases "
                   "(smallest file; one opaque tensor for other safetensors readers)")
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="batch size the 'fastest' policy measures at")
    p.add_argument("--formats", type=lambda t: [f.strip() for f in t.split(",") if f.strip()],
                   default=None, help="comma-separated formats the policy may choose from "
                   "(default: all registered)")
    p.add_argument("--formats-from", metavar="FILE", help="use the per-layer formats of an "
                   "earlier compact file (e.g. one written with --policy fastest: its timings "
                   "are recorded in it and copied over), instead of --policy")
    p.add_argument("-o", "--output", required=True, help="compact file to write (.cnn)")


def run(a: argparse.Namespace) -> None:
    from compactnn.cli import models
    from compactnn.io import inspect, save
    from compactnn.nn import layer_records, to_compact

    check_output(a.output, a.checkpoint, a.formats_from)
    replayed = None
    if a.formats_from:
        earlier = inspect(a.formats_from)
        a.policy = {li.name: li.format for li in earlier.layers}
        replayed = earlier.metadata.get("fastest")
    kind, src = models.source(a.checkpoint)
    batch_size, example = a.batch_size, None
    if a.policy == "fastest" or isinstance(a.policy, dict):
        batch_size, example = kind.timing(src, a.batch_size)
    meta = dict(src.meta)
    meta["dense_bytes"] = kind.dense_bytes(src)
    # in place: the dense model is not needed afterwards (no second float32 copy)
    cm = to_compact(src.model, a.policy, storage=a.storage, batch_size=batch_size,
                    example_input=example, progress=True, candidates=a.formats, inplace=True)
    if a.policy == "fastest":
        meta["fastest"] = {"batch_size": batch_size, "layers": {
            r.name: {"format": r.format, "seconds": {f: float(f"{t:.3g}")
                                                     for f, t in sorted(r.times.items())}}
            for r in layer_records(cm) if r.times}}
    elif replayed is not None:
        meta["fastest"] = replayed
    size = save(cm, a.output, zoo=src.zoo, metadata=meta, pack=a.pack)
    print(inspect(a.output).table())
    print(f"wrote {a.output}: {size} bytes, {meta['dense_bytes'] / size:.1f}x smaller than "
          f"the float32 {kind.baseline} ({meta['dense_bytes']} bytes)")


register(Command("convert", "convert a checkpoint to a compact file",
                 "Store every Linear/Conv2d in the format a policy picks and write one "
                 "compact file.", arguments, run,
                 lean_memory=True))
