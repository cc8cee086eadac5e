"""Distillation-loss choices for all-MiniLM-L6-v2, judged on the validation split.

One run = one loss configuration: the pretrained model, word embeddings shared with 15
values, the 36 Linear layers shared with 8/16/12 values per layer type (nearest, no
GPTQ, so a run is cheap), ``--epochs`` of distillation on ``--samples`` real-text
samples (``compactnn.zoo.texts.training_texts``) with ``--hidden`` / ``--relational``
weights (``compactnn.zoo.distill.distillation_model``), and with ``--reassign`` the
assignments move while distilling (``finetune reassign``, latent weights at
``--latent-lr``: ``compactnn.transforms.latent``); quality against the original
on ``--validation`` samples of each training corpus's validation split
(``compactnn.zoo.texts.validation_texts``): never on the evaluation parts or jargon,
which only report (``benchmarks/minilm.py``). Appends the run to ``--runs`` (JSON
lines) and writes every run there, as one table, to
``benchmarks/results/minilm_loss.json`` (shown on docs/results/minilm.md).

Usage: python benchmarks/minilm_loss.py --name h1 --hidden 1 [--samples 512 --epochs 1]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _docs import save as save_results
from _docs import table, version

from compactnn.bench.embeddings import embedding_quality
from compactnn.zoo import distill as D
from compactnn.zoo import transformer as T
from compactnn.zoo.texts import TRAIN_CORPORA, training_texts, validation_texts

PAIRS = (["*.query", "*.key"], ["*.value", "*.attention.output.dense"],
         ["*.intermediate.dense", "*layer.?.output.dense"])  # the layer types --k names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--hidden", type=float, default=0.0)
    ap.add_argument("--relational", type=float, default=0.0)
    ap.add_argument("--reassign", action="store_true", help="let the assignments move "
                    "(finetune reassign: latent weights, straight-through)")
    ap.add_argument("--latent-lr", type=float, default=None, help="the latent weights' "
                    "learning rate with --reassign (default --lr)")
    ap.add_argument("--k", default="8,16,12", help="values for query+key, value+attention "
                    "output, feed-forward")
    ap.add_argument("--validation", type=int, default=200, help="samples per corpus")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="/tmp/compactnn-minilm-loss.jsonl")
    args = ap.parse_args(argv)
    if args.latent_lr is not None and not args.reassign:
        ap.error("--latent-lr needs --reassign")
    torch.set_num_threads(args.threads)
    teacher, model = T.load_minilm(), T.load_minilm()
    recipe = [{"method": "cws", "k": int(k), "layers": layers}
              for k, layers in zip(args.k.split(","), PAIRS, strict=True)]
    tune = {"method": "finetune", "epochs": args.epochs, "lr": args.lr, "batch_size": 32}
    if args.reassign:
        tune.update(reassign=True, reassign_lr=args.latent_lr)
    recipe.append(tune)
    t0 = time.perf_counter()
    D.compress_minilm_(model, recipe, training_texts(args.samples), teacher=teacher,
                       embedding_k=15, hidden=args.hidden, relational=args.relational)
    seconds = time.perf_counter() - t0
    quality = {}
    for c in TRAIN_CORPORA:
        texts = validation_texts(c, args.validation)
        quality[c] = embedding_quality(T.encode(teacher, texts), T.encode(model, texts))
    row = {**vars(args), "commit": version()["commit"], "compress_s": seconds,
           "quality": quality,
           "mean_cosine": sum(q["cosine_mean"] for q in quality.values()) / len(quality),
           "mean_top1": sum(q["top1"] for q in quality.values()) / len(quality)}
    print(json.dumps(row))
    with open(args.runs, "a") as f:
        f.write(json.dumps(row) + "\n")
    with open(args.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    save_results("minilm_loss", [runs_table(runs)], text=TEXT, summary=None,
                 raw={"runs": runs}, page="docs/results/minilm.md")
    return 0


TEXT = ("Each row: one `python benchmarks/minilm_loss.py` run (its options in the first "
        "columns; nearest 8/16/12 sharing, 15-value embeddings, batch 32; reassign: whether "
        "the assignments of the Linear layers and the embeddings moved, at which latent "
        "learning rate). Per corpus: mean "
        "cosine / top-1 among the validation samples of each training corpus.")


def runs_table(runs: list[dict]) -> dict:
    """One row per run: its loss weights, steps, mean and per-corpus quality, time."""
    corpora = list(runs[0]["quality"])
    cols = [("name", "", ":--"), ("h / r", "{:g} / {:g}", "--:"), ("lr", "{:g}", "--:"),
            ("reassign", "", "--:"), ("epochs x samples", "{} x {}", "--:"),
            ("mean cos", "{:.4f}", "--:"), ("mean top-1", "{:.3f}", "--:")]
    cols += [(c, "{:.4f} / {:.3f}", "--:") for c in corpora]
    cols += [("compress s", "{:.0f}", "--:"), ("commit", "", ":--")]
    return table(cols, [[r["name"], [r["hidden"], r["relational"]], r["lr"], _moves(r),
                         [r["epochs"], r["samples"]], r["mean_cosine"], r["mean_top1"],
                         *([r["quality"][c]["cosine_mean"], r["quality"][c]["top1"]]
                           for c in corpora), r["compress_s"],
                         r.get("commit") or "before runs kept their commit"] for r in runs])


def _moves(run: dict) -> str:
    """The reassign column: "no", or the latent weights' learning rate."""
    if not run.get("reassign"):
        return "no"
    return f"lr {run['latent_lr'] if run.get('latent_lr') is not None else run['lr']:g}"


if __name__ == "__main__":
    raise SystemExit(main())
