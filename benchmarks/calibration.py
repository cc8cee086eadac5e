"""GPTQ-calibrated vs nearest-value weight sharing on trained Fashion-MNIST models.

For LeNet-300-100 and LeNet-5 (trained here from seed 0, cached in ``--out``), and
for each quantizer (CWS, UQ), k and starting point (the dense model, or the model
globally pruned to 90 % with fine-tuning), the sharing step runs twice: assigning each
weight to its nearest codebook value, and with ``calibrate: --calibrate`` (GPTQ error
compensation on the layer inputs of that many training images,
``compactnn.transforms.calibrate``). The codebook is the same in both; test accuracy is
reported without fine-tuning and after one epoch of constraint-keeping fine-tuning,
with the entropy of the weights in bits per weight (``layer_report``).

Results: ``benchmarks/results/calibration.json`` (the digest, docs/results.md section 2)
and ``calibration_full.json`` (every point, docs/results/calibration.md).

Usage: python benchmarks/calibration.py [--models lenet300,lenet5] [--ks 2,4,8]
       [--calibrate 1024] [--out out/calibration] [--jobs 1] [--results DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _docs import RESULTS, render, save, table

from compactnn import train, zoo
from compactnn.transforms import FineTune, Prune, compress_, layer_report

# model: (training epochs, lr), fine-tuning of the pruned model, of the shared model
SETUP = {"lenet300": (15, 1e-3), "lenet5": (6, 1e-3)}
PRUNE = (90, (50, 80), FineTune(2, 1e-3))
SHARE_FINETUNE = FineTune(1, 3e-3)
def trained(name: str, tr, out: Path) -> Path:
    """The dense model (trained once, cached) and the 90 %-pruned one."""
    dense, pruned = out / f"{name}_dense.safetensors", out / f"{name}_prune90.safetensors"
    if not dense.exists():
        torch.manual_seed(0)
        model = zoo.build(name)
        epochs, lr = SETUP[name]
        train.fit(model, tr, epochs, lr, 128, seed=0, progress=False)
        train.save_checkpoint(model, dense)
    if not pruned.exists():
        model = load(name, dense)
        p, schedule, ft = PRUNE
        compress_(model, [Prune(p, "global", schedule, ft), ft], tr)
        train.save_checkpoint(model, pruned)
    return out


def load(name: str, path: Path):
    model = zoo.build(name)
    train.load_checkpoint(model, path)
    return model


def point(name: str, start: Path, method: str, k: int, calibrate: int, tr, te) -> dict:
    model = load(name, start)
    t0 = time.perf_counter()
    compress_(model, [{"method": method, "k": k, "calibrate": calibrate}], tr, bake=False)
    seconds = time.perf_counter() - t0
    before = train.evaluate(model, te)["accuracy"]
    train.fit(model, tr, SHARE_FINETUNE.epochs, SHARE_FINETUNE.lr, 128, seed=0,
              progress=False)
    after = train.evaluate(model, te)["accuracy"]
    report = layer_report(model)
    return {"acc": before, "acc_ft": after, "bits": report.bits_per_weight,
            "seconds": seconds}


_SHARED: dict = {}  # what the forked workers of --jobs read


def _train(name: str) -> None:
    torch.set_num_threads(_SHARED["threads"])
    trained(name, _SHARED["tr"], _SHARED["out"])


def _point(task: tuple[str, str, str, int]) -> dict:
    """Nearest and GPTQ assignments of one (model, start, method, k)."""
    torch.set_num_threads(_SHARED["threads"])
    name, start, method, k = task
    sh = _SHARED
    path = sh["out"] / f"{name}_{start}.safetensors"
    near = point(name, path, method, k, 0, sh["tr"], sh["te"])
    gptq = point(name, path, method, k, sh["calibrate"], sh["tr"], sh["te"])
    print(f"{name} {start} {method} k={k}: accuracy {near['acc']:.4f} nearest, "
          f"{gptq['acc']:.4f} GPTQ", flush=True)
    return {"model": name, "start": start, "method": method, "k": k, "nearest": near,
            "gptq": gptq}


def parallel(fn, tasks: list, jobs: int) -> list:
    """``[fn(t) for t in tasks]`` in ``jobs`` forked processes (in order)."""
    if jobs <= 1:
        return [fn(t) for t in tasks]
    import multiprocessing as mp
    with mp.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
        return pool.map(fn, tasks, chunksize=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--methods", default="cws,uq")
    ap.add_argument("--ks", default="2,4,8")
    ap.add_argument("--calibrate", type=int, default=1024)
    ap.add_argument("--data", help="folder with the Fashion-MNIST IDX files")
    ap.add_argument("--out", default="out/calibration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1,
                    help="models and points run in this many processes of one thread each")
    ap.add_argument("--results", default=str(RESULTS), help="folder of the results files")
    args = ap.parse_args(argv)
    torch.set_num_threads(1 if args.jobs > 1 else args.threads)  # no OpenMP pool to fork
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tr, te = zoo.load_dataset("fashion-mnist", args.data)
    models = args.models.split(",")
    _SHARED.update(tr=tr, te=te, out=out, calibrate=args.calibrate,
                   threads=1 if args.jobs > 1 else args.threads)
    parallel(_train, models, args.jobs)
    baselines = [{"model": name, **{
        start: train.evaluate(load(name, out / f"{name}_{start}.safetensors"), te)["accuracy"]
        for start in ("dense", "prune90")}} for name in models]
    print(baselines, flush=True)
    tasks = [(name, start, method, k) for name in models for start in ("dense", "prune90")
             for method in args.methods.split(",") for k in map(int, args.ks.split(","))]
    points = parallel(_point, tasks, args.jobs)
    raw = {"baselines": baselines, "points": points}
    setup = setup_text(args)
    print(render(save("calibration", digest(points), text=setup, summary=[], raw=raw,
                      directory=args.results)))
    print(render(save("calibration_full", full(baselines, points), text=setup,
                      page="docs/results/calibration.md", directory=args.results)))
    return 0


NAMES = {"lenet300": "LeNet-300-100", "lenet5": "LeNet-5"}
PCT = "{:.2%}"
WITHIN = 0.003  # "within 0.3 points" after fine-tuning


def setup_text(args) -> str:
    p, schedule, ft = PRUNE
    return (f"Test accuracy (10,000 Fashion-MNIST test images) after one sharing step on a "
            f"trained model, with the weights assigned to the quantizer's codebook (the same "
            f"in both) by nearest value or by GPTQ on the layer inputs of {args.calibrate} "
            f"training images (`calibrate: {args.calibrate}`), before and after "
            f"{SHARE_FINETUNE.epochs} epoch(s) of constraint-keeping fine-tuning "
            f"(lr {SHARE_FINETUNE.lr:g}). \"prune{p}\": the model globally pruned to {p} % "
            f"(schedule {', '.join(map(str, (*schedule, p)))} with {ft.epochs} fine-tuning "
            f"epochs each). Bits/w: empirical entropy of the weights (`layer_report`), biases "
            f"excluded. Calibration s: GPTQ's time per model "
            f"({1 if args.jobs > 1 else args.threads} torch thread(s), {args.jobs} process(es), "
            "2 shared cores).")


def _cells(pt: dict) -> list:
    n, g = pt["nearest"], pt["gptq"]
    return [[n["bits"], g["bits"]], n["acc"], g["acc"], n["acc_ft"], g["acc_ft"]]


def digest(points: list[dict]) -> list[dict]:
    """Per model and start: how often GPTQ is ahead, and its largest and smallest gain."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for pt in points:
        groups.setdefault((pt["model"], pt["start"]), []).append(pt)
    counts, extremes = [], []
    for (model, start), pts in groups.items():
        gain = {id(p): p["gptq"]["acc"] - p["nearest"]["acc"] for p in pts}
        secs = [p["gptq"]["seconds"] for p in pts]
        label = f"{NAMES.get(model, model)}, {start}"
        counts.append([label, len(pts), sum(gain[id(p)] > 0 for p in pts),
                       sum(p["gptq"]["acc_ft"] > p["nearest"]["acc_ft"] - WITHIN for p in pts),
                       [min(secs), max(secs)]])
        best = max(pts, key=lambda p: gain[id(p)])
        worst = min(pts, key=lambda p: gain[id(p)])
        for what, p in (("largest", best), ("smallest", worst)):
            extremes.append([label, what, f"{p['method'].upper()} k={p['k']}", *_cells(p)])
    return [
        table([("model, start", "", "---"), ("points", "", "--:"),
               ("GPTQ ahead right after sharing", "", "--:"),
               ("GPTQ ahead or within 0.3 points after fine-tuning", "", "--:"),
               ("calibration s", "{:.1f}-{:.1f}", "--:")], counts,
              title="GPTQ-calibrated vs nearest assignments: how often GPTQ is ahead"),
        table([("model, start", "", "---"), ("GPTQ's gain", "", "---"),
               ("quantizer", "", "---"), ("bits/w nearest / GPTQ", "{:.2f} / {:.2f}", "--:"),
               ("nearest", PCT, "--:"), ("GPTQ", PCT, "--:"), ("nearest + ft", PCT, "--:"),
               ("GPTQ + ft", PCT, "--:")], extremes,
              title="The points of largest and smallest gain right after sharing"),
    ]


def full(baselines: list[dict], points: list[dict]) -> list[dict]:
    """The baselines and every point."""
    return [
        table([("model", "", "---"), ("dense", PCT, "--:"), ("pruned 90 %", PCT, "--:")],
              [[NAMES.get(b["model"], b["model"]), b["dense"], b["prune90"]]
               for b in baselines], title="Baselines (test accuracy)"),
        table([("model", "", "---"), ("start", "", "---"), ("method", "", "---"),
               ("k", "", "--:"), ("bits/w nearest", "{:.3f}", "--:"),
               ("bits/w GPTQ", "{:.3f}", "--:"), ("acc. nearest", "{:.4f}", "--:"),
               ("acc. GPTQ", "{:.4f}", "--:"), ("nearest + ft", "{:.4f}", "--:"),
               ("GPTQ + ft", "{:.4f}", "--:"), ("calibration s", "{:.1f}", "--:")],
              [[p["model"], p["start"], p["method"], p["k"], p["nearest"]["bits"],
                p["gptq"]["bits"], p["nearest"]["acc"], p["gptq"]["acc"],
                p["nearest"]["acc_ft"], p["gptq"]["acc_ft"], p["gptq"]["seconds"]]
               for p in points], title="Every point"),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
