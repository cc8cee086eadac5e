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
  feed-forward) or ``mix4`` (4/8/4), suffixed ``g`` for GPTQ assignments;
- epochs of distillation on ``samples`` real-text samples (0: none);
- calibrate: samples for GPTQ / Wanda / SparseGPT (default ``--calibrate``).

Distillation matches the original model's embeddings (squared error) plus
``--hidden`` times the relative error of the token states of every layer and
``--relational`` times the error of the batch's cosine-similarity matrix
(``compactnn.zoo.distill.distillation_model``; defaults: the built-in recipe's).

Rows are cached in ``--cache`` (JSON), so an interrupted run resumes. Writes ``--out``
(markdown) and ``--plot`` (size vs quality per corpus).

``0:mixg:2:3000`` with the default options is the CLI's built-in ``minilm`` recipe
(``compactnn compress minilm --recipe minilm --embedding-k 15``: the same steps, the same
3000 samples, the same loss); its row says so.

Usage: python benchmarks/minilm.py --points 0:mixg:2:3000,50s:16g:2:3000 [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
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
NOTES_MARKER = "<!-- notes: kept when this page is regenerated -->"
SHARING = {
    "mix": ((8, 16, 12), "8/16/12"),
    "mix4": ((4, 8, 4), "4/8/4"),
}
LAYER_TYPES = (["*.query", "*.key"], ["*.value", "*.attention.output.dense"],
               ["*.intermediate.dense", "*layer.?.output.dense"])
UNSEEN = M.UNSEEN[0]


class Point:
    """One configuration, parsed from ``prune:k[:epochs[:samples]]``."""

    def __init__(self, text: str) -> None:
        parts = text.split(":")
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
            out += [{"method": "cws", "k": k, "layers": layers, **extra}
                    for k, layers in zip(SHARING[self.k][0], LAYER_TYPES, strict=True)]
        else:
            out.append({"method": "cws", "k": int(self.k), **extra})
        if self.epochs:
            out.append({"method": "finetune", "epochs": self.epochs, "lr": lr,
                        "batch_size": 32})
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
                       embedding_k=args.embedding_k, hidden=args.hidden,
                       relational=args.relational)
    t_compress = time.perf_counter() - t0
    cm = to_compact(model, args.policy, storage="auto")
    path = os.path.join(folder, "minilm.cnn")
    size = save(cm, path, metadata={"recipe": recipe, "embedding_k": args.embedding_k})
    back = load(path)
    quality = {c: embedding_quality(refs[c], T.encode(back, evals[c])) for c in evals}
    info = inspect(path)
    weights = sum(li.weights for li in info.layers)
    linear = sum(li.stored_bytes for li in info.layers)
    nonzero = sum(int((m.weight != 0).sum()) for m in model.modules()
                  if isinstance(m, torch.nn.Linear))
    builtin = (recipe == RECIPES["minilm"] and n == 3000 and args.embedding_k == 15
               and (args.hidden, args.relational) == (D.HIDDEN, D.RELATIONAL))
    return {"point": pt.text, "builtin": builtin, "prune": pt.prune_label, "k": pt.k_label,
            "assign": f"GPTQ {cal}" if pt.gptq else "nearest",
            "distilled": (f"{pt.epochs} x {pt.samples}, h {args.hidden:g} r "
                          f"{args.relational:g}" if pt.epochs else "no"),
            "loss": {"hidden": args.hidden, "relational": args.relational} if pt.epochs
            else None,
            "recipe": recipe, "weights": weights, "sparsity": 1 - nonzero / weights,
            "linear_bytes": linear, "linear_ratio": 4 * weights / linear,
            "linear_bits": 8 * linear / weights, "file_bytes": size,
            "file_ratio": original / size, "quality": quality, "t_compress": t_compress}


def _key(pt: Point, args) -> str:
    calibrated = pt.gptq or pt.criterion != "magnitude"
    return (f"{pt.text}{f'-c{pt.calibrate or args.calibrate}' if calibrated else ''}"
            f"{f'-lr{args.lr:g}-hs{args.hidden:g}-rel{args.relational:g}' if pt.epochs else ''}"
            f"-e{args.embedding_k}-{args.policy}"
            f"-h{args.held_out}")


def size_table(rows: list[dict]) -> str:
    head = ("| point | pruning | k | assignment | distilled | sparsity | Linear bytes | "
            "Linear x | bits/w | file bytes | file x | compress s |\n"
            "|:---|:---|---:|:---|:---:|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "\n".join(
        f"| `{r['point']}`{' (built-in `minilm`)' if r.get('builtin') else ''} | "
        f"{r['prune']} | {r['k']} | {r['assign']} | {r['distilled']} | "
        f"{r['sparsity']:.1%} | {r['linear_bytes']:,} | {r['linear_ratio']:.1f} | "
        f"{r['linear_bits']:.2f} | {r['file_bytes']:,} | {r['file_ratio']:.1f} | "
        f"{r['t_compress']:.0f} |" for r in rows) + "\n"


def quality_table(rows: list[dict]) -> str:
    corpora = list(rows[0]["quality"])
    head = ("| point | Linear x | " + " | ".join(
        f"{c}{' (unseen)' if c == UNSEEN else ''} cos / min / top-1 / top-5"
        for c in corpora) + " |\n|:---|---:|" + "---:|" * len(corpora) + "\n")
    lines = []
    for r in rows:
        cells = [f"{q['cosine_mean']:.4f} / {q['cosine_min']:.3f} / {q['top1']:.3f} / "
                 f"{q['top5']:.3f}" for q in (r["quality"][c] for c in corpora)]
        lines.append(f"| `{r['point']}` | {r['linear_ratio']:.1f} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def targets(rows: list[dict]) -> str:
    """The issue's targets on the unseen corpus (and the generated set), met or not."""
    def q(r: dict, c: str = UNSEEN) -> dict:
        return r["quality"][c]

    def best(cands: list[dict], ok) -> tuple[dict | None, dict | None]:
        good = [r for r in cands if ok(r)]
        return (max(good, key=lambda r: r["linear_ratio"], default=None),
                max(cands, key=lambda r: q(r)["cosine_mean"], default=None))

    def show(r: dict | None) -> str:
        if r is None:
            return "no row"
        g = q(r, "generated")
        return (f"`{r['point']}`: {r['linear_ratio']:.2f}x, {UNSEEN} cos "
                f"{q(r)['cosine_mean']:.4f} top-1 {q(r)['top1']:.3f}; generated cos "
                f"{g['cosine_mean']:.4f} top-1 {g['top1']:.3f}")

    out = ["| target (on the unseen corpus) | best row meeting it / closest row | met |",
           "|:---|:---|:---:|"]
    ten = [r for r in rows if r["linear_ratio"] >= 10]
    ok10 = lambda r: q(r)["cosine_mean"] >= 0.98 and q(r)["top1"] >= 0.90  # noqa: E731
    hit, near = best(ten, ok10)
    out.append(f"| Linear >= 10x at cos >= 0.98 and top-1 >= 0.90 | "
               f"{show(hit) if hit else 'closest ' + show(near)} | {'yes' if hit else 'no'} |")
    sixteen = [r for r in rows if r["linear_ratio"] >= 16]
    hit16, near16 = best(sixteen, lambda r: q(r)["cosine_mean"] >= 0.97)
    out.append(f"| Linear >= 16x at cos >= 0.97 | "
               f"{show(hit16) if hit16 else 'closest ' + show(near16)} | "
               f"{'yes' if hit16 else 'no'} |")
    half = [r for r in rows if "%" in r["prune"] and r["sparsity"] >= 0.495]
    hit50, near50 = best(half, lambda r: q(r)["cosine_mean"] >= 0.98)
    out.append(f"| 50% unstructured + sharing at cos >= 0.98 | "
               f"{show(hit50) if hit50 else 'closest ' + show(near50)} | "
               f"{'yes' if hit50 else 'no'} |")
    nm = [r for r in rows if r["prune"].startswith("2:4")]
    hit24, near24 = best(nm, lambda r: q(r)["cosine_mean"] >= 0.97)
    out.append(f"| 2:4 sparsity at cos >= 0.97 | "
               f"{show(hit24) if hit24 else 'closest ' + show(near24)} | "
               f"{'yes' if hit24 else 'no'} |")
    ref = hit or near
    if ref is not None:
        out.append(f"| whole file >= 8x at the 10x point | `{ref['point']}`: "
                   f"{ref['file_ratio']:.2f}x ({ref['file_bytes']:,} bytes) | "
                   f"{'yes' if ref['file_ratio'] >= 8 else 'no'} |")
    return "\n".join(out) + "\n"


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
    ap.add_argument("--out", default=str(ROOT / "docs/results/minilm.md"))
    ap.add_argument("--plot", default=str(ROOT / "docs/results/minilm_size_vs_quality.png"))
    args = ap.parse_args(argv)
    if args.quick:
        args.points, args.calibrate, args.held_out = "0:16g:1:64,2of4s:16:0", 64, 40
        args.cache = os.path.join(tempfile.gettempdir(), "compactnn-minilm-quick.json")
        args.out = os.path.join(tempfile.gettempdir(), "minilm-quick.md")
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
    cmd = "python benchmarks/minilm.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [
        "# all-MiniLM-L6-v2 compressed end to end, judged on real text\n",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"shared with other jobs; torch {torch.__version__}.\n",
        f"Original `model.safetensors`: {original:,} bytes. Linear weights: 36 layers, "
        f"{rows[0]['weights']:,} weights. Word embeddings shared with k={args.embedding_k} "
        "and packed (4-bit codes). Calibration (GPTQ, Wanda, SparseGPT: "
        f"{args.calibrate} samples) and distillation (Adam, cosine decay from {args.lr:g}, "
        "batch 32, no dropout; loss: embedding error + h x token-state error + r x "
        "similarity-matrix error, h / r in the distilled column) use real text only: the "
        "training parts of "
        f"{', '.join(M.TRAIN_CORPORA)} (`compactnn.zoo.texts.training_texts`, "
        "round robin). "
        f"Quality: the first {args.held_out} samples of the evaluation part of each corpus "
        f"(`compactnn.zoo.corpora`); **{UNSEEN}** is a source that no calibration or "
        "distillation sample comes from. Each compact file is reloaded with "
        f"`compactnn.load` and encoded through the compact layers (policy `{args.policy}`, "
        "storage `auto`).\n",
        "## Sizes\n", size_table(rows),
        "## Quality per held-out corpus (mean cosine / min cosine / top-1 / top-5)\n",
        quality_table(rows),
        f"![size vs quality]({os.path.basename(args.plot)})\n",
        "## Targets\n", targets(rows),
    ]
    print("\n".join(text))
    notes = ""
    if os.path.exists(args.out):
        with open(args.out) as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER):]
    with open(args.out, "w") as f:
        f.write("\n".join(text) + ("\n" + notes if notes else ""))
    plot(rows, args.plot)
    save_results("minilm", [], summary=None, raw={"rows": rows})
    print(f"wrote {args.out}, {args.plot} and benchmarks/results/minilm.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
