"""all-MiniLM-L6-v2 end to end on real text: compress, convert, save, reload, encode, judge.

Every configuration (a *point*) starts from the pretrained
sentence-transformers/all-MiniLM-L6-v2 (``compactnn.zoo.transformer.load_minilm``):

1. recipe on the 36 ``nn.Linear`` layers: optional pruning (magnitude, Wanda or
   SparseGPT; unstructured or 2:4), weight sharing (CWS, k values per layer or per
   layer type, assignments nearest or by GPTQ), optional distillation of the original
   model's embeddings; calibration and distillation samples are real text
   (``compactnn.zoo.texts.training_texts``: the training parts of wordnet,
   python-docs, bible and the generated sentences, round robin);
2. the word-embedding table shared with ``--embedding-k`` values and packed;
3. ``to_compact(policy, storage="auto")``, ``compactnn.save``, ``compactnn.load`` (rebuilt
   from the file alone), then ``encode`` of the evaluation part of every corpus of
   ``EVAL_CORPORA`` through the compact layers: ``jargon`` (no calibration or
   distillation sample comes from it) plus the held-out parts of the training corpora
   and the generated sentences;
4. quality against the original model's embeddings per corpus (mean / min cosine,
   top-1 / top-5 neighbour agreement); sizes: Linear weights as stored vs float32, whole
   file vs the original ``model.safetensors``.

A point is ``prune:k[:epochs[:samples[:calibrate]]]``:

- prune: ``0`` (none), ``<p>`` (magnitude, per layer), ``<p>w`` / ``<p>s`` (Wanda /
  SparseGPT), ``2of4`` / ``2of4w`` / ``2of4s`` (the 2:4 pattern by magnitude / Wanda /
  SparseGPT); data-aware pruning calibrates on ``--calibrate`` samples;
- k: an integer (every layer), ``mix`` (8/16/12 for query+key / value+attention output /
  feed-forward), ``mix4`` (4/8/4) or ``mixb`` (6/7/16/14/16/12 for query / key / value /
  attention output / intermediate / output), suffixed ``g`` for GPTQ assignments;
- epochs of distillation on ``samples`` real-text samples (0: none);
- calibrate: samples for GPTQ / Wanda / SparseGPT (default ``--calibrate``);
- a suffix ``@rows``: the word embeddings' rows are scaled before sharing
  (``compress_minilm_(embedding_scaled=True)``);
- a suffix ``@move`` or ``@move<lr>`` (after ``@rows`` if both): the distillation lets
  the assignments move (``finetune reassign``; latent weights at ``lr``, default the
  distillation's: ``compactnn.transforms.latent``).

Distillation matches the original model's embeddings (squared error) plus
``--hidden`` times the relative error of the token states of every layer and
``--relational`` times the error of the batch's cosine-similarity matrix
(``compactnn.zoo.distill.distillation_model``; defaults: the built-in recipe's).

Rows are cached in ``--cache`` (JSON), so an interrupted run resumes; each row keeps
the date and commit it was computed at. Writes ``benchmarks/results/minilm.json`` (the
quality table and the issue's targets for docs/results.md, section 8),
``minilm_full.json`` (sizes and quality for docs/results/minilm.md; ``python
benchmarks/render.py`` puts both on their pages) and ``--plot`` (size vs quality).

``0:mixbg:2:3000@rows`` with the default options is the CLI's built-in ``minilm`` recipe
(``compactnn compress minilm --recipe minilm --embedding-k 15 --embedding-scaled``: the
same steps, the same 3000 samples, the same loss); its row says so.

Usage: python benchmarks/minilm.py --points 0:mixg:2:3000,50s:16g:2:3000 [--quick]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _docs import render, table, version
from _docs import save as save_results

from compactnn import load, save, to_compact
from compactnn.bench.embeddings import embedding_quality
from compactnn.io import inspect
from compactnn.zoo import distill as D
from compactnn.zoo import texts as M
from compactnn.zoo import transformer as T
from compactnn.zoo.corpora import load_corpus
from compactnn.zoo.presets import RECIPES

ROOT = Path(__file__).resolve().parents[1]
PAIRS = (["*.query", "*.key"], ["*.value", "*.attention.output.dense"],
         ["*.intermediate.dense", "*layer.?.output.dense"])
TYPES = (["*.query"], ["*.key"], ["*.value"], ["*.attention.output.dense"],
         ["*.intermediate.dense"], ["*layer.?.output.dense"])
SHARING = {  # name: (k per layer group, label, the groups)
    "mix": ((8, 16, 12), "8/16/12", PAIRS),
    "mix4": ((4, 8, 4), "4/8/4", PAIRS),
    # q / k / v / attention output / intermediate / output: chosen by nearest-value
    # sharing on the validation texts (docs/results/minilm.md, "allocation")
    "mixb": ((6, 7, 16, 14, 16, 12), "6/7/16/14/16/12", TYPES),
}
UNSEEN = M.UNSEEN[0]
ROWS = "@rows"  # a point's suffix: the word embeddings' rows scaled before sharing
MOVE = "@move"  # a point's suffix: assignments move while distilling (latent lr after it)
BUILTIN = "0:mixbg:2:3000@rows@move"  # the CLI's built-in recipe (with --embedding-scaled)


class Point:
    """One configuration, parsed from ``prune:k[:epochs[:samples]]``."""

    def __init__(self, text: str) -> None:
        base, move, latent_lr = text.partition(MOVE)
        self.reassign = bool(move)
        try:
            self.latent_lr = float(latent_lr) if latent_lr else None
        except ValueError:
            raise SystemExit(f"bad point {text!r}: {MOVE} takes a learning rate or "
                             "nothing") from None
        self.scaled = base.endswith(ROWS)
        parts = base.removesuffix(ROWS).split(":")
        if not 2 <= len(parts) <= 5:
            raise SystemExit(f"bad point {text!r}: expected "
                             "prune:k[:epochs[:samples[:calibrate]]]")
        self.text = text
        prune, k = parts[0], parts[1]
        self.epochs = int(parts[2]) if len(parts) > 2 else 0
        self.samples = int(parts[3]) if len(parts) > 3 else 0
        self.calibrate = int(parts[4]) if len(parts) > 4 else None
        if self.epochs and not self.samples:
            raise SystemExit(f"bad point {text!r}: distillation needs a sample count")
        if self.reassign and not self.epochs:
            raise SystemExit(f"bad point {text!r}: {MOVE} needs distillation")
        crit = {"w": "wanda", "s": "sparsegpt"}
        self.criterion = crit.get(prune[-1:], "magnitude")
        base = prune[:-1] if prune[-1:] in crit else prune
        self.pattern = "2:4" if base == "2of4" else None
        self.p = 50.0 if self.pattern else float(base)
        self.gptq = k.endswith("g")
        k = k.removesuffix("g")
        if k not in SHARING and not k.isdigit():
            raise SystemExit(f"bad k {k!r} in {text!r}: an integer, mix or mix4")
        self.k = k

    @property
    def k_label(self) -> str:
        return SHARING[self.k][1] if self.k in SHARING else self.k

    @property
    def prune_label(self) -> str:
        if not self.p:
            return "none"
        how = self.pattern or f"{self.p:g}%"
        return f"{how} {self.criterion}"

    def recipe(self, calibrate: int, lr: float) -> list[dict]:
        calibrate = self.calibrate or calibrate
        out: list[dict] = []
        if self.p:
            step = {"method": "prune", "criterion": self.criterion}
            step.update({"pattern": self.pattern} if self.pattern else {"p": self.p})
            if self.criterion != "magnitude":
                step["calibrate"] = calibrate
            out.append(step)
        extra = {"calibrate": calibrate} if self.gptq else {}
        if self.k in SHARING:
            ks, _, groups = SHARING[self.k]
            out += [{"method": "cws", "k": k, "layers": layers, **extra}
                    for k, layers in zip(ks, groups, strict=True)]
        else:
            out.append({"method": "cws", "k": int(self.k), **extra})
        if self.epochs:
            tune = {"method": "finetune", "epochs": self.epochs, "lr": lr, "batch_size": 32}
            if self.reassign:
                tune["reassign"] = True
                tune.update({"reassign_lr": self.latent_lr} if self.latent_lr else {})
            out.append(tune)
        return out


def run_point(pt: Point, pristine: T.SentenceEncoder, train: list[str],
              refs: dict, evals: dict, original: int, args,
              folder: str) -> dict:
    model = copy.deepcopy(pristine)
    recipe = pt.recipe(args.calibrate, args.lr)
    cal = pt.calibrate or args.calibrate
    n = max(pt.samples, cal if (pt.gptq or pt.criterion != "magnitude") else 1)
    t0 = time.perf_counter()
    D.compress_minilm_(model, recipe, train[:n], teacher=pristine,
                       embedding_k=args.embedding_k, embedding_scaled=pt.scaled,
                       hidden=args.hidden, relational=args.relational)
    t_compress = time.perf_counter() - t0
    cm = to_compact(model, args.policy, storage="auto")
    path = os.path.join(folder, "minilm.cnn")
    size = save(cm, path, metadata={"recipe": recipe, "embedding_k": args.embedding_k,
                                    "embedding_scaled": pt.scaled})
    back = load(path)
    quality = {c: embedding_quality(refs[c], T.encode(back, evals[c])) for c in evals}
    info = inspect(path)
    weights = sum(li.weights for li in info.layers)
    linear = sum(li.stored_bytes for li in info.layers)
    nonzero = sum(int((m.weight != 0).sum()) for m in model.modules()
                  if isinstance(m, torch.nn.Linear))
    when = version()
    return {"point": pt.text, "prune": pt.prune_label, "k": pt.k_label,
            "assign": (f"GPTQ {cal}" if pt.gptq else "nearest") + (
                f", moved (latent lr {pt.latent_lr or args.lr:g})" if pt.reassign else ""),
            "distilled": (f"{pt.epochs} x {pt.samples}, h {args.hidden:g} r "
                          f"{args.relational:g}" if pt.epochs else "no"),
            "loss": {"hidden": args.hidden, "relational": args.relational} if pt.epochs
            else None,
            "embedding": f"k={args.embedding_k}{', row scales' if pt.scaled else ''}",
            "recipe": recipe, "weights": weights, "sparsity": 1 - nonzero / weights,
            "linear_bytes": linear, "linear_ratio": 4 * weights / linear,
            "linear_bits": 8 * linear / weights, "file_bytes": size,
            "file_ratio": original / size, "quality": quality, "t_compress": t_compress,
            "commit": when["commit"],
            "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat()}


def _key(pt: Point, args) -> str:
    calibrated = pt.gptq or pt.criterion != "magnitude"
    return (f"{pt.text}{f'-c{pt.calibrate or args.calibrate}' if calibrated else ''}"
            f"{f'-lr{args.lr:g}-hs{args.hidden:g}-rel{args.relational:g}' if pt.epochs else ''}"
            f"-e{args.embedding_k}-{args.policy}"
            f"-h{args.held_out}")


QUALITY = "{:.4f} / {:.3f} / {:.3f} / {:.3f}"


def _label(r: dict) -> str:
    return f"`{r['point']}`" + (" (built-in `minilm`)" if is_builtin(r) else "")


def is_builtin(r: dict) -> bool:
    """Whether a row is the CLI's built-in recipe: its point, recipe, default calibration,
    loss and embeddings (rows are cached, so this is decided when they are shown)."""
    return (r["point"] == BUILTIN and r["recipe"] == RECIPES["minilm"]
            and r.get("embedding") == "k=15, row scales" and r["assign"] == "GPTQ 1024"
            and r.get("loss") == {"hidden": D.HIDDEN, "relational": D.RELATIONAL})


def _quality(q: dict) -> list[float]:
    return [q["cosine_mean"], q["cosine_min"], q["top1"], q["top5"]]


def size_table(rows: list[dict]) -> dict:
    """Per point: the recipe, the sparsity, the Linear and file sizes, where it ran."""
    cols = [("point", "", ":--"), ("pruning", "", ":--"), ("k", "", "--:"),
            ("embeddings", "", ":--"),
            ("assignment", "", ":--"), ("distilled", "", ":--"), ("sparsity", "{:.1%}", "--:"),
            ("Linear bytes", "{:,}", "--:"), ("Linear x", "{:.1f}", "--:"),
            ("bits/w", "{:.2f}", "--:"), ("file bytes", "{:,}", "--:"),
            ("file x", "{:.2f}", "--:"), ("compress s", "{:.0f}", "--:"),
            ("measured", "", ":--")]
    return table(cols, [[_label(r), r["prune"], r["k"], r.get("embedding", "k=15"),
                         r["assign"], r["distilled"],
                         r["sparsity"], r["linear_bytes"], r["linear_ratio"], r["linear_bits"],
                         r["file_bytes"], r["file_ratio"], r["t_compress"],
                         f"{r['date']}, {r['commit']}" if r.get("commit")
                         else "an earlier run (cached before rows kept their commit)"]
                        for r in rows], title="Sizes")


def quality_table(rows: list[dict], title: str | None = None) -> dict:
    """Per point and held-out corpus: mean / min cosine, top-1 / top-5 agreement."""
    corpora = list(rows[0]["quality"])
    cols = [("point", "", ":--"), ("Linear x", "{:.1f}", "--:"), ("file x", "{:.2f}", "--:")]
    cols += [(f"{c}{' (unseen)' if c == UNSEEN else ''}", QUALITY, "--:") for c in corpora]
    return table(cols, [[_label(r), r["linear_ratio"], r["file_ratio"],
                         *(_quality(r["quality"][c]) for c in corpora)] for r in rows],
                 title=title, caption="Per held-out corpus: mean cosine / min cosine / "
                 "top-1 / top-5 neighbour agreement with the original model's embeddings.")


def targets(rows: list[dict]) -> list[dict]:
    """The issue's targets on the unseen corpus, as summary rows: the best row meeting
    each (the most compressed), else the closest (the best mean cosine)."""
    def q(r: dict) -> dict:
        return r["quality"][UNSEEN]

    def show(r: dict) -> str:
        g = r["quality"]["generated"]
        return (f"`{r['point']}`: {r['linear_ratio']:.2f}x, {UNSEEN} cos "
                f"**{q(r)['cosine_mean']:.4f}** top-1 **{q(r)['top1']:.3f}** (generated "
                f"{g['cosine_mean']:.4f} / {g['top1']:.3f})")

    def row(target: str, cands: list[dict], cos: float, top1: float = 0.0) -> dict:
        good = [r for r in cands if q(r)["cosine_mean"] >= cos and q(r)["top1"] >= top1]
        if good:
            hit = max(good, key=lambda r: r["linear_ratio"])
            return {"issue": 12, "target": target, "measured": show(hit), "met": True}
        if not cands:
            return {"issue": 12, "target": target, "measured": "no point of this kind run",
                    "met": None, "status": "**not measured**"}
        near = max(cands, key=lambda r: q(r)["cosine_mean"])
        short = [f"cos by {cos - q(near)['cosine_mean']:.3f}"] if q(near)["cosine_mean"] < cos \
            else []
        short += [f"top-1 by {top1 - q(near)['top1']:.2f}"] if q(near)["top1"] < top1 else []
        return {"issue": 12, "target": target, "measured": "closest " + show(near),
                "met": False, "status": f"**missed** ({', '.join(short)})"}

    out = [row(f"Linear >= 10x at cos >= 0.98 and top-1 >= 0.90, unseen real text ({UNSEEN})",
               [r for r in rows if r["linear_ratio"] >= 10], 0.98, 0.90),
           row("Linear >= 16x at cos >= 0.97", [r for r in rows if r["linear_ratio"] >= 16],
               0.97),
           row("50% unstructured + sharing at cos >= 0.98",
               [r for r in rows if "%" in r["prune"] and r["sparsity"] >= 0.495], 0.98),
           row("2:4 sparsity at cos >= 0.97",
               [r for r in rows if r["prune"].startswith("2:4")], 0.97)]
    ten = [r for r in rows if r["linear_ratio"] >= 10]
    if ten:  # the file of the best 10x row
        ref = max(ten, key=lambda r: q(r)["cosine_mean"])
        out.append({"issue": 12, "target": "whole file >= 8x at the 10x point",
                    "measured": f"`{ref['point']}`: {ref['file_ratio']:.2f}x "
                    f"({ref['file_bytes']:,} bytes)", "met": ref["file_ratio"] >= 8})
    return out


def plot(rows: list[dict], path: str) -> None:
    """Linear-weight compression vs mean cosine, one marker per corpus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(rows[0]["quality"])
    markers = dict(zip(corpora, "o^sDv*", strict=False))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.cm.tab10(np.arange(len(corpora)))
    for c, color in zip(corpora, colors, strict=True):
        for ax, metric in ((left, "cosine_mean"), (right, "top1")):
            pts = sorted(rows, key=lambda r: r["linear_ratio"])
            ax.scatter([r["linear_ratio"] for r in pts], [r["quality"][c][metric] for r in pts],
                       marker=markers[c], color=color, s=60 if c == UNSEEN else 30,
                       label=c + (" (unseen)" if c == UNSEEN else ""))
    for r in rows:
        left.annotate(r["point"], (r["linear_ratio"], r["quality"][UNSEEN]["cosine_mean"]),
                      textcoords="offset points", xytext=(4, -10), fontsize=7)
    for ax, metric, lines in ((left, "mean cosine to the original", (0.98, 0.97)),
                              (right, "top-1 neighbour agreement", (0.90,))):
        for y in lines:
            ax.axhline(y, color="grey", lw=0.8, ls=":")
        for x in (10, 16):
            ax.axvline(x, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("Linear weights: float32 bytes / stored bytes")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8, loc="lower left")
    fig.suptitle("all-MiniLM-L6-v2 on real text: size vs quality per held-out corpus")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", default="0:mixg:2:3000,50s:16g:2:3000,2of4s:16g:2:3000,"
                    "0:mix4g:2:3000")
    ap.add_argument("--calibrate", type=int, default=1024,
                    help="samples whose layer inputs guide GPTQ and Wanda / SparseGPT")
    ap.add_argument("--embedding-k", type=int, default=15)
    ap.add_argument("--policy", default="index_map", help="to_compact policy of the rows")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--hidden", type=float, default=D.HIDDEN,
                    help="weight of the token-state term of the distillation loss")
    ap.add_argument("--relational", type=float, default=D.RELATIONAL,
                    help="weight of the similarity-matrix term of the distillation loss")
    ap.add_argument("--held-out", type=int, default=500, help="evaluation samples per corpus")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny run (2 points, 64 samples)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                    "compactnn-minilm-real.json"))
    ap.add_argument("--results", help="folder of the results files (default benchmarks/results)")
    ap.add_argument("--plot", default=str(ROOT / "docs/results/minilm_size_vs_quality.png"))
    args = ap.parse_args(argv)
    if args.quick:
        args.points, args.calibrate, args.held_out = "0:16g:1:64,2of4s:16:0", 64, 40
        args.cache = os.path.join(tempfile.gettempdir(), "compactnn-minilm-quick.json")
        args.results = os.path.join(tempfile.gettempdir(), "compactnn-minilm-quick")
        args.plot = os.path.join(tempfile.gettempdir(), "minilm-quick.png")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    points = [Point(t) for t in filter(None, args.points.split(","))]
    cache: dict = {}
    if os.path.exists(args.cache):
        with open(args.cache) as f:
            cache = json.load(f)
    pristine = T.load_minilm()
    original = os.path.getsize(T.model_dir() / "model.safetensors")
    todo = [pt for pt in points if _key(pt, args) not in cache]
    if todo:
        n = max([pt.calibrate or args.calibrate for pt in todo] + [pt.samples for pt in todo])
        train = M.training_texts(n)
        evals = {c: load_corpus(c, "eval", args.held_out) for c in M.EVAL_CORPORA}
        print(f"encoding {sum(map(len, evals.values()))} evaluation "
              "samples with the original model ...", flush=True)
        refs = {c: T.encode(pristine, s) for c, s in evals.items()}
        with tempfile.TemporaryDirectory() as folder:
            for pt in todo:
                print(f"  {pt.text}: {pt.recipe(args.calibrate, args.lr)}", flush=True)
                cache[_key(pt, args)] = run_point(pt, pristine, train, refs, evals,
                                                  original, args, folder)
                with open(args.cache, "w") as f:
                    json.dump(cache, f, indent=1)
                r = cache[_key(pt, args)]
                print(f"    Linear {r['linear_ratio']:.2f}x, file {r['file_ratio']:.2f}x, "
                      + ", ".join(f"{c} {q['cosine_mean']:.4f}/{q['top1']:.3f}"
                                  for c, q in r["quality"].items()), flush=True)
    rows = [cache[_key(pt, args)] for pt in points]
    text = (f"Original `model.safetensors`: {original:,} bytes; Linear weights: 36 layers, "
            f"{rows[0]['weights']:,} weights; word embeddings shared with "
            f"k={args.embedding_k} and packed (one codebook; points ending in `{ROWS}`: "
            "each row divided by its standard deviation first, one float16 scale per row). "
            f"Calibration ({args.calibrate} samples unless "
            "the point names another) and distillation (Adam, cosine decay from "
            f"{args.lr:g}, batch 32; loss: embedding error + h x token-state error + r x "
            f"similarity-matrix error) use the training parts of {', '.join(M.TRAIN_CORPORA)} "
            f"only. Quality: {args.held_out} samples of the evaluation part of each corpus; "
            f"**{UNSEEN}** is a source no calibration or distillation sample comes from. Each "
            "file is reloaded with `compactnn.load` and encoded through its compact layers "
            f"(policy `{args.policy}`, storage `auto`). Rows are cached by point "
            "(`--cache`); the last column says when and at which commit each was computed.")
    where = {"directory": args.results} if args.results else {}
    save_results("minilm", [quality_table(rows)], text=text, summary=targets(rows),
                 raw={"rows": rows}, **where)
    full = save_results("minilm_full", [size_table(rows),
                                        quality_table(rows, title="Quality per held-out corpus")],
                        text=text + f" Plot: `{os.path.basename(args.plot)}`.",
                        page="docs/results/minilm.md", **where)
    print(render(full))
    plot(rows, args.plot)
    print(f"wrote {args.plot} and minilm.json, minilm_full.json in "
          f"{args.results or 'benchmarks/results'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
