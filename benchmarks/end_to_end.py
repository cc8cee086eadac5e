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
to ``benchmarks/results/end_to_end.json`` (the digest and the summary rows, docs/results.md
section 4) and ``end_to_end_full.json`` (per-layer tables, docs/results/end_to_end.md),
built from this run's models only; ``<work>/end_to_end.json`` keeps every run's raw
results by model.

Usage: python benchmarks/end_to_end.py [--models lenet300,lenet5] [--work DIR]
       [--threads 1] [--epochs-lenet300 20] [--epochs-lenet5 12] [--data DIR] [--jobs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from _docs import render, table
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
            "accuracy": train.evaluate(back, te)["accuracy"],
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
    out["load_before"] = os.getloadavg()[0]
    with threads(args.threads), torch.no_grad():
        rows = compare(models, te, (1, 256), repeats=50)
    out["load_after"] = os.getloadavg()[0]
    out["rows"] = [{"label": r.label, "accuracy": r.metric, "bytes": r.file_bytes,
                    "ratio": r.ratio, "latency_ms": r.latency_ms, "throughput": r.throughput}
                   for r in rows]
    out["table"] = format_rows(rows)
    return out


NAMES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5"}
PCT, X = "{:.2%}", "{:.1f}x"


def docs(results: dict[str, dict], args) -> tuple[list[dict], list[dict], list[dict]]:
    """The digest tables (docs/results.md), the per-layer tables (docs/results/
    end_to_end.md) and the summary rows of this run's models."""
    files, speed, full = [], [], []
    for name, res in results.items():
        base = res["baseline_accuracy"]
        for i, (key, f) in enumerate(res["files"].items()):
            files.append([f"{NAMES.get(name, name)} (`{name}` recipe)" if i == 0 else "",
                          [base, res["dense_bytes"]] if i == 0 else None, key, f["bytes"],
                          f["ratio"], f["accuracy"], 100 * (base - f["accuracy"]),
                          f"{f['agree']}/{f['total']}"])
        dense = res["rows"][0]
        for r in res["rows"]:
            speed.append([NAMES.get(name, name), r["label"], r["latency_ms"]["1"],
                          r["latency_ms"]["1"] / dense["latency_ms"]["1"],
                          r["latency_ms"]["256"], r["throughput"]["256"],
                          r["throughput"]["256"] / dense["throughput"]["256"]])
        full.append(table(
            [("conversion", "", "---"), ("file bytes", "{:,}", "--:"), ("ratio", X, "--:"),
             ("header", "{:,}", "--:"), ("plain tensors", "{:,}", "--:"),
             ("convert s", "{:.2f}", "--:"), ("load s", "{:.2f}", "--:"),
             ("accuracy", PCT, "--:"), ("predictions equal to constrained dense", "", "--:")],
            [[k, f["bytes"], f["ratio"], f["header_bytes"], f["plain_bytes"], f["convert_s"],
              f["load_s"], f["accuracy"], f"{f['agree']}/{f['total']}"]
             for k, f in res["files"].items()],
            title=f"{NAMES.get(name, name)} on Fashion-MNIST",
            caption=f"float32 safetensors state dict: {res['dense_bytes']:,} bytes; baseline "
                    f"accuracy {base:.2%} ({getattr(args, f'epochs_{name}')} epochs), "
                    f"constrained dense {res['constrained_accuracy']:.2%}."))
        for key, f in res["files"].items():
            full.append(table(
                [("layer", "", "---"), ("runtime format", "", "---"), ("stored", "", "---"),
                 ("shape", "", "---"), ("stored bytes", "{:,}", "--:"),
                 ("runtime bytes", "{:,}", "--:"), ("bits/weight", "{:.3f}", "--:"),
                 ("entropy bits/weight", "{:.3f}", "--:")],
                [[li["name"], li["format"], "archive, decoded at load"
                  if li["storage"] == "archive" else "raw", "x".join(map(str, li["shape"])),
                  li["stored_bytes"], li["runtime_bytes"], li["bits_per_weight"],
                  li["entropy_bits_per_weight"]] for li in f["layers"]],
                title=f"{NAMES.get(name, name)}, layers of `{key}`"))
    full.insert(0, table(
        [("model", "", "---"), ("step", "", "---"), ("settings", "", "---")],
        [[NAMES.get(name, name) if i == 0 else "", step["method"], ", ".join(
            f"{k}: {json.dumps(v)}" for k, v in step.items() if k != "method")]
         for name, res in results.items() for i, step in enumerate(res["recipe"])],
        title="Recipes (`compactnn.zoo.presets.RECIPES`)",
        caption="Applied to the dense baseline by `compress_`; baselines: Adam lr 1e-3 with "
                "cosine decay, batch 128, seed 0, for the epochs given below."))
    loads = ", ".join(f"{NAMES.get(n, n)} {r['load_before']:.1f} before / {r['load_after']:.1f}"
                      " after" for n, r in results.items())
    digest = [
        table([("model", "", "---"), ("baseline", "{:.2%}, {:,} B", "--:"),
               ("conversion", "", "---"), ("compact file", "{:,}", "--:"), ("ratio", X, "--:"),
               ("accuracy", PCT, "--:"), ("loss (points)", "{:.2f}", "--:"),
               ("predictions equal", "", "--:")], files,
              caption="Ratios against the float32 safetensors file of the model's "
              "`state_dict`, everything counted on both sides (biases, headers, tables). "
              "`auto`: every layer stored where smaller as an archive stream decoded at load "
              "into its runtime format; `raw`: every layer stored in its runtime format. "
              "Accuracy: the model loaded from the file, on the 10,000 test images; "
              "predictions equal: against the constrained dense model."),
        table([("model", "", "---"), ("variant", "", "---"), ("b=1 ms", "{:.3f}", "--:"),
               ("b=1 vs dense", "{:.2f}x", "--:"), ("b=256 ms", "{:.3f}", "--:"),
               ("b=256 images/s", "{:,.0f}", "--:"), ("b=256 vs dense", "{:.2f}x", "--:")],
              speed, caption=f"Latency: median of 50 runs, {args.threads} thread(s) for "
              f"torch and numba; b=1 vs dense is the latency ratio (below 1: faster), b=256 "
              f"vs dense the throughput ratio (above 1: faster). Load average (2 shared "
              f"cores): {loads}" + (f"; the models ran in {args.jobs} processes at once."
                                    if getattr(args, "jobs", 1) > 1 else ".")),
    ]
    return digest, full, summary(results)


def summary(results: dict[str, dict]) -> list[dict]:
    """The issue-5 rows of the summary of targets, from this run."""
    rows = []
    for name, res in results.items():
        if name not in TARGETS:
            continue
        f = res["files"]["smallest/auto"]
        change = 100 * (f["accuracy"] - res["baseline_accuracy"])
        rows.append({"issue": 5, "target": f"{NAMES[name]} file >= {TARGETS[name]:g}x at <= "
                     f"{MAX_LOSS_POINTS} points", "measured": [f["ratio"], change],
                     "fmt": "{:.1f}x at {:+.2f}",
                     "met": f["ratio"] >= TARGETS[name] and -change <= MAX_LOSS_POINTS})
    agree = [(f["agree"], f["total"]) for res in results.values() for f in res["files"].values()]
    rows.append({"issue": 5, "target": "compact predictions = constrained dense, whole test set",
                 "measured": f"{min(a for a, _ in agree)}/{agree[0][1]}",
                 "note": f"lowest of {len(agree)} files: every conversion of "
                         f"{', '.join(NAMES.get(n, n) for n in results)}",
                 "met": all(a == t for a, t in agree)})
    ratios = {}  # per model: compact batch-1 latency / dense torch's, by conversion
    for name, res in results.items():
        dense = res["rows"][0]["latency_ms"]["1"]
        ratios[name] = {r["label"].removeprefix("compact "): r["latency_ms"]["1"] / dense
                        for r in res["rows"][1:]}
    fast = {n: min(r[k] for k in r if k.startswith("fastest")) for n, r in ratios.items()}
    small_ok = all(r["smallest"] <= 1 for r in ratios.values())
    rows.append({"issue": 5, "target": "batch-1 latency no worse than dense torch",
                 "measured": "; ".join(
                     f"{NAMES.get(n, n)}: " + ", ".join(f"`{k}` {v:.2f}x" for k, v in r.items())
                     for n, r in ratios.items()) + " dense torch's latency",
                 "met": all(v <= 1 for v in fast.values()),
                 "status": None if small_ok else
                 ("met with `fastest`" if all(v <= 1 for v in fast.values()) else None)})
    return rows


_SHARED: dict = {}  # what the forked workers of --jobs read


def _run(name: str) -> dict:
    sh = _SHARED
    return run(name, sh["tr"], sh["te"], sh["args"], sh["work"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--work", default="/tmp/compactnn-e2e")
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs-lenet300", type=int, default=20)
    ap.add_argument("--epochs-lenet5", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=1,
                    help="models run in this many processes (timings then share the CPU)")
    ap.add_argument("--results", help="folder of the results files (default benchmarks/results)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tr, te = zoo.load_dataset("fashion-mnist", args.data)
    t0 = time.perf_counter()
    names = args.models.split(",")
    if args.jobs > 1:  # one forked process per model
        import multiprocessing as mp
        _SHARED.update(tr=tr, te=te, args=args, work=work)
        with mp.get_context("fork").Pool(min(args.jobs, len(names))) as pool:
            results = dict(zip(names, pool.map(_run, names, chunksize=1), strict=True))
    else:
        results = {name: run(name, tr, te, args, work) for name in names}
    log(f"models done ({time.perf_counter() - t0:.0f} s)")
    out = work / "end_to_end.json"  # results of earlier runs for other models are kept
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **results}, indent=1))
    results = json.loads(json.dumps(results))  # as the JSON holds them (batch sizes as str)
    digest, full, rows = docs(results, args)
    where = {} if args.results is None else {"directory": args.results}
    print(render(save_results("end_to_end", digest, summary=rows, raw=results, **where)))
    print(render(save_results("end_to_end_full", full, page="docs/results/end_to_end.md",
                              **where)))
    log(f"wall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
