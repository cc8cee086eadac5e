"""End-to-end targets: LeNet-300-100 and LeNet-5 on Fashion-MNIST, from training to a
compact file that is loaded and run.

For each model: train a dense baseline, compress it with the recipe in
``compactnn.zoo.presets.RECIPES`` (magnitude pruning with fine-tuning, k-means weight
sharing, fine-tuning), convert it with policies ``smallest``, ``fastest`` and
``fastest`` among the sparse / low-entropy formats only (``fastest-compact``: csr,
index_map, cer, cser, ham, sham; no dense-like layout), all with storage ``auto``
(archive streams where smaller, decoded at load), and with policy ``smallest`` and
storage ``raw`` (every layer stored in its runtime format), save, reload from the file
and measure, all in this process:

- file bytes vs the float32 safetensors state dict (everything counted: biases,
  headers, tables), per layer: runtime format, whether it is stored raw (runs as
  stored) or as an archive (decoded at load), stored bytes and entropy bound;
- test accuracy of the baseline, of the constrained dense model and of the model
  loaded from the file, and the number of test inputs whose prediction equals the
  constrained dense model's (must be all);
- batch-1 latency and batch-256 throughput of the dense torch baseline and of each
  compact model (median of repeated runs, ``--threads`` threads for torch and numba).

Checkpoints are cached in ``--work`` so reruns only redo the measurements. Results go
to ``<work>/end_to_end.json`` and are printed as markdown.

Usage: python benchmarks/end_to_end.py [--models lenet300,lenet5] [--work DIR]
       [--threads 1] [--epochs-lenet300 20] [--epochs-lenet5 12] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from _docs import save as save_results

from compactnn import formats, load, save, to_compact, train, zoo
from compactnn.bench import threads
from compactnn.bench.compare import compare, format_rows, predictions_agree
from compactnn.io import inspect
from compactnn.train.checkpoint import dense_file_bytes
from compactnn.transforms import Recipe, compress_
from compactnn.zoo.checkpoint import load_checkpoint, save_checkpoint
from compactnn.zoo.presets import RECIPES, model_kwargs

TARGETS = {"lenet300": 50.0, "lenet5": 40.0}
MAX_LOSS_POINTS = 0.5
# formats that store only the nonzeros and/or few distinct values (no dense-like layouts:
# dense, and blockdiag / permseq, which hold a generic matrix as one dense block)
LOW_ENTROPY = ("csr", "index_map", "cer", "cser", "ham", "sham")
# (label, policy, storage, candidate formats: None = all registered)
CONVERSIONS = (("smallest/auto", "smallest", "auto", None),
               ("fastest/auto", "fastest", "auto", None),
               ("fastest-compact/auto", "fastest", "auto", "low-entropy"),
               ("smallest/raw", "smallest", "raw", None))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def baseline(name: str, tr, te, epochs: int, work: Path):
    path = work / f"{name}_baseline.safetensors"
    if path.exists():  # reused only if trained for as many epochs
        model, _, _, info = load_checkpoint(path)
        if info.get("epochs") == epochs:
            return model
        log(f"{name}: {path} was trained for {info.get('epochs')} epochs; training again")
    kwargs = model_kwargs(name, tr)
    torch.manual_seed(0)
    model = zoo.build(name, **kwargs)
    t = time.perf_counter()
    train.fit(model, tr, epochs, lr=1e-3, batch_size=128, progress=True)
    log(f"{name}: baseline trained in {time.perf_counter() - t:.0f} s")
    (work / f"{name}_compressed.safetensors").unlink(missing_ok=True)  # made from another
    save_checkpoint(model, path, name, kwargs, metrics=train.evaluate(model, te),
                             epochs=epochs)
    return model.eval()


def compressed(name: str, base, tr, te, work: Path):
    path = work / f"{name}_compressed.safetensors"
    recipe = Recipe.from_list(RECIPES[name])
    if path.exists():  # reused only if it was made with the current recipe
        model, _, _, info = load_checkpoint(path)
        stored = info.get("recipe")  # re-parsed: fields added since keep their defaults
        if isinstance(stored, list) and Recipe.from_list(stored).to_list() == recipe.to_list():
            return model
        log(f"{name}: {path} was made with another recipe; compressing again")
    model = zoo.build(name, **model_kwargs(name, tr))
    model.load_state_dict(base.state_dict())
    t = time.perf_counter()
    report = compress_(model, recipe, tr, te, progress=True)
    log(f"{name}: compressed in {time.perf_counter() - t:.0f} s\n{report.table()}")
    save_checkpoint(model, path, name, model_kwargs(name, tr),
                             recipe=recipe.to_list())
    return model.eval()


def run(name: str, tr, te, args, work: Path) -> dict:
    base = baseline(name, tr, te, getattr(args, f"epochs_{name}"), work)
    constrained = compressed(name, base, tr, te, work)
    kwargs = model_kwargs(name, tr)
    dense_bytes = dense_file_bytes(base)
    x = te.tensors[0]
    out: dict = {"model": name, "dense_bytes": dense_bytes,
                 "baseline_accuracy": train.evaluate(base, te)["accuracy"],
                 "constrained_accuracy": train.evaluate(constrained, te)["accuracy"],
                 "recipe": RECIPES[name], "files": {}}
    models = [("dense torch baseline", base, dense_bytes)]
    for key, policy, storage, only in CONVERSIONS:
        fids = [f for f in LOW_ENTROPY if f in formats.available()] if only else None
        t = time.perf_counter()
        with threads(args.threads):  # 'fastest' times the kernels as they will run
            cm = to_compact(constrained, policy, storage=storage, example_input=x[:1],
                            candidates=fids)
        convert_s = time.perf_counter() - t
        path = work / f"{name}_{key.replace('/', '_')}.cnn"
        size = save(cm, path, zoo=(name, kwargs))
        t = time.perf_counter()
        back = load(path)
        load_s = time.perf_counter() - t
        same, total = predictions_agree(back, constrained, x)
        info = inspect(path)
        out["files"][key] = {
            "bytes": size, "ratio": dense_bytes / size, "convert_s": convert_s,
            "load_s": load_s, "agree": same, "total": total,
            "header_bytes": info.header_bytes, "plain_bytes": info.state_bytes,
            "layers": [{"name": li.name, "format": li.format, "storage": li.storage,
                        "shape": list(li.shape), "stored_bytes": li.stored_bytes,
                        "runtime_bytes": li.runtime_bytes,
                        "bits_per_weight": li.bits_per_weight,
                        "entropy_bits_per_weight": li.entropy_bits_per_weight}
                       for li in info.layers],
        }
        if storage == "auto":
            models.append((f"compact {key.split('/')[0]}", back, size))
    with threads(args.threads), torch.no_grad():
        rows = compare(models, te, (1, 256), repeats=50)
    out["rows"] = [{"label": r.label, "accuracy": r.metric, "bytes": r.file_bytes,
                    "ratio": r.ratio, "latency_ms": r.latency_ms, "throughput": r.throughput}
                   for r in rows]
    out["table"] = format_rows(rows)
    return out


def markdown(res: dict) -> str:
    name = res["model"]
    lines = [f"### {name} on Fashion-MNIST", "",
             f"float32 safetensors state dict: {res['dense_bytes']} bytes; baseline accuracy "
             f"{100 * res['baseline_accuracy']:.2f}%, constrained dense "
             f"{100 * res['constrained_accuracy']:.2f}%", "",
             "| conversion | file bytes | ratio | header | plain tensors | load s | "
             "predictions equal to constrained dense |", "|---|---|---|---|---|---|---|"]
    for key, f in res["files"].items():
        lines.append(f"| {key} | {f['bytes']} | {f['ratio']:.1f}x | {f['header_bytes']} | "
                     f"{f['plain_bytes']} | {f['load_s']:.2f} | {f['agree']}/{f['total']} |")
    for key, f in res["files"].items():
        lines += ["", f"layers of `{key}`:", "",
                  "| layer | runtime format | stored | shape | stored bytes | runtime bytes | "
                  "bits/weight | entropy bits/weight |", "|---|---|---|---|---|---|---|---|"]
        for li in f["layers"]:
            stored = "archive, decoded at load" if li["storage"] == "archive" else "raw"
            lines.append(f"| {li['name']} | {li['format']} | {stored} | "
                         f"{li['shape'][0]}x{li['shape'][1]} | {li['stored_bytes']} | "
                         f"{li['runtime_bytes']} | {li['bits_per_weight']:.3f} | "
                         f"{li['entropy_bits_per_weight']:.3f} |")
    lines += ["", "```", res["table"], "```", ""]
    best = res["files"]["smallest/auto"]
    loss = 100 * (res["baseline_accuracy"] - res["rows"][1]["accuracy"])
    ok = best["ratio"] >= TARGETS[name] and loss <= MAX_LOSS_POINTS
    lines.append(f"target {TARGETS[name]:.0f}x at <= {MAX_LOSS_POINTS} points: "
                 f"{best['ratio']:.1f}x at {loss:+.2f} points accuracy loss -> "
                 f"{'MET' if ok else 'NOT MET'}")
    b1 = {r["label"]: r["latency_ms"][1]
          for r in res["rows"]}
    lines.append("batch-1 latency (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in b1.items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--work", default="/tmp/compactnn-e2e")
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs-lenet300", type=int, default=20)
    ap.add_argument("--epochs-lenet5", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tr, te = zoo.load_dataset("fashion-mnist", args.data)
    t0 = time.perf_counter()
    results = {}
    for name in args.models.split(","):
        results[name] = run(name, tr, te, args, work)
        print(markdown(results[name]), flush=True)
    out = work / "end_to_end.json"  # results of earlier runs for other models are kept
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **results}, indent=1))
    save_results("end_to_end", [], summary=None, raw={**previous, **results})
    print(f"command: python benchmarks/end_to_end.py --models {args.models} --threads "
          f"{args.threads} (wall {time.perf_counter() - t0:.0f} s, torch "
          f"{torch.__version__}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
