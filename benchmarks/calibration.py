"""GPTQ-calibrated vs nearest-value weight sharing on trained Fashion-MNIST models.

For LeNet-300-100 and LeNet-5 (trained here from seed 0, cached in ``--out``), and
for each quantizer (CWS, UQ), k and starting point (the dense model, or the model
globally pruned to 90 % with fine-tuning), the sharing step runs twice: assigning each
weight to its nearest codebook value, and with ``calibrate: --calibrate`` (GPTQ error
compensation on the layer inputs of that many training images,
``compactnn.transforms.calibrate``). The codebook is the same in both; test accuracy is
reported without fine-tuning and after one epoch of constraint-keeping fine-tuning,
with the entropy of the weights in bits per weight (``layer_report``).

Usage: python benchmarks/calibration.py [--models lenet300,lenet5] [--ks 2,4,8]
       [--calibrate 1024] [--out out/calibration] [--table MD]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from _docs import save

from compactnn import train, zoo
from compactnn.transforms import FineTune, Prune, compress_, layer_report

# model: (training epochs, lr), fine-tuning of the pruned model, of the shared model
SETUP = {"lenet300": (15, 1e-3), "lenet5": (6, 1e-3)}
PRUNE = (90, (50, 80), FineTune(2, 1e-3))
SHARE_FINETUNE = FineTune(1, 3e-3)
HEAD = """# GPTQ-calibrated vs nearest-value weight sharing (LeNet, Fashion-MNIST)

Test accuracy (10,000 Fashion-MNIST test images) after one sharing step on a trained
model, with the weights assigned to the quantizer's codebook by nearest value or by
GPTQ on the layer inputs of {calibrate} training images (`calibrate: {calibrate}`), before
and after one epoch of constraint-keeping fine-tuning (lr 3e-3). "prune90": the model
globally pruned to 90 % (schedule 50, 80, 90 with 2 fine-tuning epochs each). Bits/w:
empirical entropy of the weights (`layer_report`), biases excluded. Baselines:
{baselines}.

"""


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--methods", default="cws,uq")
    ap.add_argument("--ks", default="2,4,8")
    ap.add_argument("--calibrate", type=int, default=1024)
    ap.add_argument("--data", help="folder with the Fashion-MNIST IDX files")
    ap.add_argument("--out", default="out/calibration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table", help="also write the markdown table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tr, te = zoo.load_dataset("fashion-mnist", args.data)
    lines = ["| model | start | method | k | bits/w nearest | bits/w GPTQ | acc. nearest | "
             "acc. GPTQ | nearest + 1 ep | GPTQ + 1 ep | calibration s |",
             "|:---|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    baselines: list[str] = []
    points: list[dict] = []
    for name in args.models.split(","):
        trained(name, tr, out)
        dense_acc = train.evaluate(load(name, out / f"{name}_dense.safetensors"), te)
        pruned_acc = train.evaluate(load(name, out / f"{name}_prune90.safetensors"), te)
        baselines.append(f"{name} {dense_acc['accuracy']:.2%} dense, "
                         f"{pruned_acc['accuracy']:.2%} pruned")
        print(baselines[-1], flush=True)
        for start in ("dense", "prune90"):
            path = out / f"{name}_{start}.safetensors"
            for method in args.methods.split(","):
                for k in map(int, args.ks.split(",")):
                    near = point(name, path, method, k, 0, tr, te)
                    gptq = point(name, path, method, k, args.calibrate, tr, te)
                    points.append({"model": name, "start": start, "method": method, "k": k,
                                   "nearest": near, "gptq": gptq})
                    lines.append(
                        f"| {name} | {start} | {method} | {k} | {near['bits']:.3f} | "
                        f"{gptq['bits']:.3f} | "
                        f"{near['acc']:.4f} | {gptq['acc']:.4f} | {near['acc_ft']:.4f} | "
                        f"{gptq['acc_ft']:.4f} | {gptq['seconds']:.1f} |")
                    print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    save("calibration", [], summary=None, raw={"baselines": baselines, "points": points})
    print("\n" + table)
    if args.table:
        Path(args.table).write_text(
            HEAD.format(calibrate=args.calibrate, baselines="; ".join(baselines))
            + "Command: `" + " ".join(["python benchmarks/calibration.py", *(argv or [])])
            + f"` ({os.cpu_count()} cores, {args.threads} torch threads)\n\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
