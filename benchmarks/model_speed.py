"""Whole-model speed of compact models against their originals, at 1 and 2 threads and
at the default thread count, in one process, round robin.

* MiniLM (all-MiniLM-L6-v2): every encoder Linear weight-shared to ``--k`` values
  (k-means, no fine-tuning: speed does not depend on the values) and the word
  embeddings packed, converted with policy ``index_map``; sentences per second of
  ``encode`` at batch 1 and 32 on held-out generated sentences, original vs compact,
  and torch's ``quantize_dynamic`` int8 model as the baseline users try first.
* LeNet-300-100 (random weights pruned 94% and shared to 16 values, as the demo's
  recipe leaves it), policy ``smallest``: batch-1 latency against the dense torch model.

Writes benchmarks/results/model_speed.json (rendered into docs/results.md by
benchmarks/render.py) and prints its tables; ``--json`` also writes the raw timings.

Usage: python benchmarks/model_speed.py [--k 16] [--rounds 5] [--json out.json]
[--docs docs/results.md] (rebuilds the page's generated sections)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import numpy as np
import torch
from _docs import publish, render, save, table

from compactnn.bench import threads
from compactnn.kernels import backend


def share_(layers: dict[str, torch.nn.Module], k: int) -> None:
    """Weight-share ``layers`` to ``k`` values each (k-means) and bake, in place."""
    from compactnn.transforms import bake_, kmeans_1d, share_layers_

    share_layers_(layers, lambda w: kmeans_1d(w, k=k))
    bake_(layers.values())


def linears(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def minilm_models(k: int) -> dict[str, torch.nn.Module]:
    from compactnn.nn import to_compact
    from compactnn.zoo.transformer import load_minilm, pack_embeddings_, word_embeddings

    original = load_minilm().eval()
    shared = load_minilm().eval()
    share_(linears(shared), k)
    share_(word_embeddings(shared), k)
    pack_embeddings_(shared)
    compact = to_compact(shared, policy="index_map").eval()
    int8 = torch.ao.quantization.quantize_dynamic(load_minilm().eval(), {torch.nn.Linear},
                                                  dtype=torch.qint8)
    return {"original": original, "int8 dynamic": int8, "compact index_map": compact}


def encode_rate(model: torch.nn.Module, sentences: list[str], batch: int) -> float:
    from compactnn.zoo.transformer import encode

    t0 = time.perf_counter()
    with torch.no_grad():
        encode(model, sentences, batch)
    return len(sentences) / (time.perf_counter() - t0)


def lenet_models() -> tuple[dict[str, torch.nn.Module], torch.Tensor]:
    from compactnn import zoo
    from compactnn.nn import to_compact
    from compactnn.transforms import bake_, prune_layers_

    torch.manual_seed(0)
    dense = zoo.build("lenet300").eval()
    shared = zoo.build("lenet300").eval()
    shared.load_state_dict(dense.state_dict())
    prune_layers_(linears(shared), 94, scope="global")
    bake_(shared)
    share_(linears(shared), 16)
    return ({"dense torch": dense, "compact smallest": to_compact(shared, "smallest").eval()},
            torch.randn(1, 1, 28, 28))


def latency(model: torch.nn.Module, x: torch.Tensor, n: int = 200) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(n):
            model(x)
    return (time.perf_counter() - t0) / n


def ratios(rows: dict[str, dict[str, float]], settings: list[str]) -> list[list]:
    """The targets: compact vs original per setting (speed-up > 1 means faster), as
    ``[target, setting, goal, measured, met]``."""
    out: list[list] = []

    def get(what: str, setting: str) -> float | None:
        v = rows.get(f"{what} | {setting}")
        return None if v is None else v["median"]

    for s in settings:
        for b, goal in ((1, 1.25), (32, 1.0)):
            c = get(f"MiniLM compact index_map b={b} sentences/s", s)
            o = get(f"MiniLM original b={b} sentences/s", s)
            q = get(f"MiniLM int8 dynamic b={b} sentences/s", s)
            if c and o:
                out.append([f"MiniLM compact vs original, b={b}", s, f">= {goal}x", c / o,
                            "yes" if c / o >= goal else "NO"])
            if c and q:
                out.append([f"MiniLM compact vs int8 dynamic, b={b} (reference)", s, "-",
                            c / q, "-"])
        c = get("LeNet-300-100 compact smallest b=1 latency ms", s)
        d = get("LeNet-300-100 dense torch b=1 latency ms", s)
        if c and d:
            out.append(["LeNet-300-100 smallest latency / dense torch, b=1", s, "<= 0.7",
                        c / d, "yes" if c / d <= 0.7 else "NO"])
    return out


def summary(targets: list[list]) -> list[dict]:
    """Issue 11's summary rows: the worst setting of each target, every setting noted."""
    out = []
    minilm = [r for r in targets if r[0].startswith("MiniLM compact vs original")]
    if minilm:
        note = "; ".join(f"b={b}: " + " / ".join(f"{r[3]:.2f}x" for r in minilm
                                                 if r[0].endswith(f"b={b}"))
                         for b in (1, 32))
        out.append({"issue": 11, "target": "MiniLM compact encode >= 1.25x original at batch 1, "
                    ">= 1.0x at batch 32 (1, 2, default threads)",
                    "measured": min(r[3] for r in minilm), "fmt": "lowest {:.2f}x",
                    "note": note, "met": all(r[4] == "yes" for r in minilm)})
    lenet = [r for r in targets if r[0].startswith("LeNet-300-100")]
    if lenet:
        out.append({"issue": 11, "target": "LeNet-300-100 `smallest` batch-1 latency <= 0.7x "
                    "dense torch", "measured": max(r[3] for r in lenet), "fmt": "{:.2f}x",
                    "note": " / ".join(f"{r[3]:.2f}x" for r in lenet) + " (1, 2, default threads)",
                    "met": all(r[4] == "yes" for r in lenet)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sentences", type=int, default=64)
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument("--docs", default=None,
                    help="then rebuild the generated sections of this page (docs/results.md)")
    args = ap.parse_args(argv)
    from compactnn.zoo.sentences import sentence_split

    _, held = sentence_split(0, args.sentences)
    default_threads = torch.get_num_threads()
    settings = [("1 thread", 1), ("2 threads", 2), (f"default ({default_threads})", None)]
    results: dict[str, dict[str, list[float]]] = {}
    lenet, x = lenet_models()
    minilm = {} if args.skip_minilm else minilm_models(args.k)
    for _ in range(args.rounds):
        for label, n in settings:
            with threads(n) if n else contextlib.nullcontext():  # default: nothing pinned
                for name, model in lenet.items():
                    model(x)
                    results.setdefault(f"LeNet-300-100 {name} b=1 latency ms | {label}",
                                       {}).setdefault("v", []).append(1e3 * latency(model, x))
                for name, model in minilm.items():
                    for b in (1, 32):
                        encode_rate(model, held[:b], b)  # warm-up
                        key = f"MiniLM {name} b={b} sentences/s | {label}"
                        results.setdefault(key, {}).setdefault("v", []).append(
                            encode_rate(model, held, b))
    raw = {"backend": backend.describe(), "cpu": os.cpu_count(), "rounds": args.rounds,
           "rows": {k: {"median": float(np.median(v["v"])), "min": float(np.min(v["v"])),
                        "max": float(np.max(v["v"]))} for k, v in results.items()}}
    targets = ratios(raw["rows"], [label for label, _ in settings])
    tables = [
        table([("measurement", "", ":---"), ("setting", "", ":---"), ("median", "{:.3f}", "---:"),
               ("min", "{:.3f}", "---:"), ("max", "{:.3f}", "---:")],
              [[*k.split(" | "), v["median"], v["min"], v["max"]] for k, v in raw["rows"].items()]),
        table([("target", "", ":---"), ("setting", "", ":---"), ("goal", "", "---:"),
               ("measured", "{:.2f}", "---:"), ("met", "", ":---")], targets)]
    text = f"{raw['backend']}; median (min-max) of {args.rounds} round-robin rounds"
    data = save("model_speed", tables, text=text, summary=summary(targets), raw=raw)
    print(render(data))
    if args.docs:
        publish(args.docs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
