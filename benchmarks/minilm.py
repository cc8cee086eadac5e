"""all-MiniLM-L6-v2 end to end: compress, convert, save, reload, encode, measure.

For every (sparsity p, shared values k) of the grid, starting from the pretrained
sentence-transformers/all-MiniLM-L6-v2 (``compactnn.zoo.transformer.load_minilm``):

1. recipe on the 36 ``nn.Linear`` layers: magnitude pruning to p % per layer (skipped for
   p = 0), then CWS (k-means weight sharing, k values per layer over the non-zero
   weights); optionally a ``finetune`` step that distils the original model's
   sentence embeddings of the generated training sentences (``--distill``);
2. the word-embedding table (30522 x 384) weight-shared with ``--embedding-k`` values and
   packed (``PackedEmbedding``: fixed-width codes, rows decoded at lookup);
3. ``to_compact(policy)`` with ``storage="auto"`` (each layer's arrays as they are or
   as an entropy-coded archive, whichever is smaller), ``compactnn.save``, then
   ``compactnn.load`` (rebuilt from the JSON description alone) and ``encode`` of 500
   held-out sentences through the compact layers;
4. quality against the original model's embeddings: mean / min cosine, top-1 / top-5
   nearest-neighbour overlap; sizes: Linear weights as stored vs float32, whole file vs
   the original ``model.safetensors``.

Then the encode throughput at batch 32 on 1 thread (torch, numba and BLAS pinned) of
the dense model and of the chosen configuration under several conversion policies.

Rows are cached in ``--cache`` (JSON), so an interrupted run resumes. Prints markdown
and writes ``--out`` (markdown) and ``--plot`` (PNG).

Per-layer-type k (``--mixed``, ``k = mix``): 8 values for query/key, 16 for
value/attention-output, 12 for the feed-forward layers (the least sensitive layers get
the fewest values; sensitivities measured one layer type at a time).

GPTQ rows (``--gptq`` points, and ``--distill`` points whose k ends in ``g``): the
sharing steps get ``calibrate: --calibrate`` (the codebook is the same k-means one; the
assignments to it are chosen by GPTQ error compensation on the layer inputs of that
many training sentences, ``compactnn.transforms.calibrate``).

Usage: python benchmarks/minilm.py [--quick] [--sparsities 0,30,50] [--ks 8,16,32]
       [--mixed 0] [--gptq 0:8,0:mix] [--distill 0:16,0:mixg] [--headline 0:mix] ...
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

from compactnn import load, save, to_compact
from compactnn.bench import threads
from compactnn.bench.embeddings import embedding_quality, encode_throughput
from compactnn.io import inspect
from compactnn.zoo import transformer as T
from compactnn.zoo.sentences import sentence_split

ROOT = Path(__file__).resolve().parents[1]


# formats that store only the nonzeros and/or few distinct values (as benchmarks/end_to_end.py)
LOW_ENTROPY = ("csr", "index_map", "cer", "cser", "ham", "sham")
NOTES_MARKER = "<!-- notes: kept when this page is regenerated -->"
MIXED = T.MIXED_SHARING  # per-layer-type k: q,k 8; v,ao 16; FFN 12
MIXED_LABEL = "8/16/12"


class _Data(dict):
    """Sentences and the original model's embeddings, encoded on first use: ``ref``
    (held-out) and ``teacher`` (distillation sentences)."""

    def __init__(self, pristine: T.SentenceEncoder, train: list[str], held: list[str],
                 original_bytes: int) -> None:
        super().__init__(train=train, held=held, original_bytes=original_bytes)
        self.pristine = pristine

    def __missing__(self, key: str) -> torch.Tensor:
        sents = {"ref": "held", "teacher": "train"}[key]
        print(f"encoding {len(self[sents])} {sents} sentences with the original model ...",
              flush=True)
        self[key] = T.encode(self.pristine, self[sents])
        return self[key]


Distill = tuple[int, int] | None
"""Distillation of a grid point: ``(epochs, sentences)``, or None for none."""


def _k_token(k: str) -> str:
    """A grid k: an integer or ``mix``, optionally suffixed ``g`` (GPTQ-calibrated)."""
    base = k.removesuffix("g")
    if base != "mix" and not base.isdigit():
        raise SystemExit(f"bad k {k!r}: expected an integer or 'mix', optionally + 'g'")
    return k


def _pairs(text: str, args) -> list[tuple[float, str, Distill]]:
    """``p:k[:epochs[:sentences]]`` items (defaults ``--epochs``, ``--distill-sentences``)."""
    out: list[tuple[float, str, Distill]] = []
    for part in filter(None, text.split(",")):
        p, k, *rest = part.split(":")
        e = int(rest[0]) if rest else args.epochs
        n = int(rest[1]) if len(rest) > 1 else args.distill_sentences
        out.append((float(p), _k_token(k), (e, n)))
    return out


def _calibrated(k: str) -> bool:
    return k.endswith("g")


def _label(k: str) -> int | str:
    base = k.removesuffix("g")
    return MIXED_LABEL if base == "mix" else int(base)


def _recipe(p: float, k: str, distill: Distill, args) -> list[dict]:
    recipe: list[dict] = [{"method": "prune", "p": p}] if p > 0 else []
    base = k.removesuffix("g")
    sharing = MIXED if base == "mix" else [{"method": "cws", "k": int(base)}]
    extra = {"calibrate": args.calibrate, "damp": args.damp} if _calibrated(k) else {}
    recipe += [{**step, **extra} for step in sharing]
    if distill:
        recipe.append({"method": "finetune", "epochs": distill[0], "lr": args.lr,
                       "batch_size": 32})
    return recipe


def _key(p: float, k: str, distill: Distill, args) -> str:
    d = f"d{distill[1]}x{distill[0]}@{args.lr:g}" if distill else "nod"
    g = (f"-gptq{args.calibrate}" + (f"d{args.damp:g}" if args.damp != 0.1 else "")
         if _calibrated(k) else "")
    return f"p{p:g}-k{k.removesuffix('g')}{g}-e{args.embedding_k}-{d}-{args.policy}"


def _compressed(pristine: T.SentenceEncoder, p: float, k: str, distill: Distill,
                data: dict, args) -> tuple[T.SentenceEncoder, list[dict], float]:
    model = copy.deepcopy(pristine)
    recipe = _recipe(p, k, distill, args)
    # sentences the recipe reads: distillation, GPTQ calibration (a subset), or none
    n = distill[1] if distill else (args.calibrate if _calibrated(k) else 0)
    t0 = time.perf_counter()
    if n:
        T.compress_minilm_(model, recipe, data["train"][:n], teacher=data["teacher"][:n],
                           embedding_k=args.embedding_k)
    else:  # no finetune step: the distillation data is never used
        T.compress_minilm_(model, recipe, data["train"][:1], embedding_k=args.embedding_k)
    return model, recipe, time.perf_counter() - t0


def run_row(pristine: T.SentenceEncoder, p: float, k: str, distill: Distill, data: dict,
            args, folder: str) -> dict:
    model, recipe, t_compress = _compressed(pristine, p, k, distill, data, args)
    t0 = time.perf_counter()
    cm = to_compact(model, args.policy, storage="auto")
    t_convert = time.perf_counter() - t0
    path = os.path.join(folder, "minilm.cnn")
    size = save(cm, path, metadata={"recipe": recipe, "embedding_k": args.embedding_k})
    t0 = time.perf_counter()
    back = load(path)
    t_load = time.perf_counter() - t0
    emb = T.encode(back, data["held"])
    q = embedding_quality(data["ref"], emb)
    info = inspect(path)
    weights = sum(li.weights for li in info.layers)
    linear = sum(li.stored_bytes for li in info.layers)
    packed = back.bert.embeddings.word_embeddings
    formats = sorted({f"{li.storage}->{li.format}" if li.storage == "archive" else li.format
                      for li in info.layers})
    return {
        "p": p, "k": _label(k), "gptq": args.calibrate if _calibrated(k) else 0,
        "damp": args.damp if _calibrated(k) else None,
        "distilled": bool(distill),
        "epochs": distill[0] if distill else 0, "sentences": distill[1] if distill else 0,
        "embedding_k": args.embedding_k, "policy": args.policy, "recipe": recipe,
        "weights": weights, "linear_bytes": linear, "linear_ratio": 4 * weights / linear,
        "linear_bits": 8 * linear / weights,
        "embedding_bytes": int(packed.nbytes), "embedding_bits": int(packed.bits),
        "file_bytes": size, "file_ratio": data["original_bytes"] / size,
        "formats": formats, **q,
        "t_compress": t_compress, "t_convert": t_convert, "t_load": t_load,
    }


def throughput(pristine: T.SentenceEncoder, p: float, k: str, data: dict,
               args) -> list[dict]:
    """Dense vs compact encode throughput (batch 32, 1 thread) for several policies. The
    model is compressed without distillation or calibration: they change values, not
    the structure the kernels see (zeros, number of distinct values)."""
    model, _, _ = _compressed(pristine, p, k.removesuffix("g"), None, data, args)
    sents = data["held"][:args.bench_sentences]
    tokens = T.tokenize(pristine, sents)["attention_mask"].sum(1).float().mean().item()
    cols = int(round(args.batch_size * tokens))
    models = [("dense float32 (original)", "-", pristine),
              ("compressed, dense float32 weights (nn.Linear)", "-", model)]
    for policy in args.bench_policies.split(","):
        # 'fastest-compact': 'fastest' among the formats that store only the nonzeros
        # and/or few distinct values (no dense-like layout)
        cands = LOW_ENTROPY if policy == "fastest-compact" else None
        with threads(1):  # 'fastest' times the candidates as they will run
            cm = to_compact(model, policy.removesuffix("-compact"), storage="auto",
                            batch_size=cols, candidates=cands)
        counts: dict[str, int] = {}
        for r in _records(cm):
            counts[r.format] = counts.get(r.format, 0) + 1
        fmts = ", ".join(f"{f} x{c}" for f, c in sorted(counts.items()))
        models.append((f"compact ({fmts})", policy, cm))
    # round robin: every model once per round, so a slow spell of the machine hits all
    rates: list[list[float]] = [[] for _ in models]
    with threads(1):
        for _ in range(args.repeats):
            for rate, (_, _, m) in zip(rates, models, strict=True):
                rate.append(encode_throughput(m, sents, args.batch_size, 1))
    rows = [{"model": label, "policy": policy, "sent_per_s": float(np.median(rate))}
            for (label, policy, _), rate in zip(models, rates, strict=True)]
    for r in rows:
        r["slowdown"] = rows[0]["sent_per_s"] / r["sent_per_s"]
        r["columns"] = cols
    return rows


def _records(model):
    from compactnn.nn import layer_records

    return layer_records(model)


def plot(rows: list[dict], path: str) -> None:
    """Size vs cosine: the whole grid (left) and the region of the targets (right).
    Colour: k; marker: square for GPTQ assignments, star for distilled rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def group(r: dict) -> tuple:
        gptq = r.get("gptq", 0)
        return r["k"], gptq, (r.get("damp") or 0.1) if gptq else None

    fig, (full, zoom) = plt.subplots(1, 2, figsize=(12, 5))
    ks = sorted({r["k"] for r in rows}, key=str)
    colors = dict(zip(ks, plt.cm.viridis(np.linspace(0, 0.85, len(ks))), strict=True))
    for k, g, damp in sorted({group(r) for r in rows}, key=str):
        mine = [r for r in rows if group(r) == (k, g, damp)]
        for d in sorted({_distilled(r) for r in mine}, key=lambda d: d != "no"):
            distilled = d != "no"
            marker = "*" if distilled else ("s" if g else "o")
            sel = sorted((r for r in mine if _distilled(r) == d), key=lambda r: r["p"])
            label = (f"k={k}" + (f", GPTQ {g}" if g else "")
                     + (f" damp {damp:g}" if damp not in (None, 0.1) else "")
                     + (f", distilled {d}" if distilled else ""))
            for ax in (full, zoom):
                ax.plot([r["linear_ratio"] for r in sel], [r["cosine_mean"] for r in sel],
                        "--" if g else "-", marker=marker, color=colors[k],
                        ms=11 if distilled else 6, label=label if ax is full else None)
            for r in sel:
                xy = (r["linear_ratio"], r["cosine_mean"])
                full.annotate(f"{r['p']:g}%", xy, textcoords="offset points", xytext=(4, -10),
                              fontsize=7)
                if 6.5 <= xy[0] <= 13 and xy[1] >= 0.9:
                    tag = (f"k={k}" + (f" p={r['p']:g}%" if r["p"] else "")
                           + (" GPTQ" if g else "") + (" + distil." if distilled else ""))
                    zoom.annotate(tag, xy, textcoords="offset points", xytext=(6, -3),
                                  fontsize=7)
    for ax in (full, zoom):
        ax.axhline(0.98, color="grey", lw=0.8, ls=":")
        ax.axvline(10, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("Linear weights: float32 bytes / stored bytes")
        ax.grid(alpha=0.3)
    full.set_xscale("log")
    full.set_ylabel("mean cosine to the original embeddings (500 held-out)")
    full.set_title("pruning % (labels) + weight sharing, k values per layer")
    zoom.set_xlim(6.5, 13)
    zoom.set_ylim(0.9, 1.0)
    zoom.set_title("the target region: >= 10x at cosine >= 0.98")
    full.legend(fontsize=7, loc="lower left")
    fig.suptitle("all-MiniLM-L6-v2")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _assign(r: dict) -> str:
    """How the row's weights were assigned to the codebook values."""
    if not r.get("gptq"):
        return "nearest"
    return f"GPTQ ({r['gptq']} sentences, damp {r.get('damp') or 0.1:g})"


def _distilled(r: dict) -> str:
    """'no', or 'epochs x sentences' of the distillation."""
    return f"{r['epochs']} x {r['sentences']}" if r["distilled"] else "no"


def quality_table(rows: list[dict]) -> str:
    head = ("| prune % | k | assignment | distilled | Linear bytes | Linear x | bits/w | "
            "file bytes | file x | cos mean | cos min | top-1 | top-5 | stored as |\n"
            "|---:|---:|:---|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|\n")
    lines = [f"| {r['p']:g} | {r['k']} | {_assign(r)} | {_distilled(r)} | "
             f"{r['linear_bytes']:,} | {r['linear_ratio']:.1f} | {r['linear_bits']:.2f} | "
             f"{r['file_bytes']:,} | {r['file_ratio']:.1f} | {r['cosine_mean']:.4f} | "
             f"{r['cosine_min']:.3f} | {r['top1']:.3f} | {r['top5']:.3f} | "
             f"{', '.join(r['formats'])} |"
             for r in sorted(rows, key=lambda r: (r["distilled"], r.get("gptq", 0),
                                                  str(r["k"]), r["p"], r["epochs"],
                                                  r["sentences"]))]
    return head + "\n".join(lines) + "\n"


def speed_table(rows: list[dict]) -> str:
    head = ("| model | policy | sentences/s | time vs dense |\n|:---|:---|---:|---:|\n")
    return head + "\n".join(f"| {r['model']} | {r['policy']} | {r['sent_per_s']:.1f} | "
                            f"{r['slowdown']:.2f}x |" for r in rows) + "\n"


def targets(rows: list[dict], srows: list[dict]) -> str:
    """The issue's targets against the measured rows: met or missed, by how much."""
    good = [r for r in rows if r["cosine_mean"] >= 0.98]
    best = max(good, key=lambda r: r["linear_ratio"], default=None)
    small = [r for r in rows if r["linear_ratio"] >= 10]
    closest = max(small, key=lambda r: r["cosine_mean"], default=None)

    def cfg(r: dict) -> str:
        return (f"p={r['p']:g}%, k={r['k']}, {_assign(r)} assignment, "
                f"distilled {_distilled(r)}")

    out = ["| target | measured | met |", "|:---|:---|:---:|"]
    parts = []
    if best is not None:
        parts.append(f"best at cosine >= 0.98: {best['linear_ratio']:.2f}x, cosine "
                     f"{best['cosine_mean']:.4f} ({cfg(best)})")
    if closest is not None:
        parts.append(f"best cosine at >= 10x: {closest['cosine_mean']:.4f}, "
                     f"{closest['linear_ratio']:.2f}x ({cfg(closest)})")
    met = best is not None and best["linear_ratio"] >= 10
    out.append(f"| Linear weights >= 10x smaller at mean cosine >= 0.98 | {'; '.join(parts)} "
               f"| {'yes' if met else 'no'} |")
    ref = best if best is not None else closest
    if ref is not None:
        out.append(f"| whole file >= 5x smaller than the float32 weights | "
                   f"{ref['file_ratio']:.2f}x ({cfg(ref)}) | "
                   f"{'yes' if ref['file_ratio'] >= 5 else 'no'} |")
    compact = [r for r in srows if r["policy"] != "-" and "dense" not in r["model"]]
    if compact:
        fast = min(compact, key=lambda r: r["slowdown"])
        out.append(f"| compact encode at batch 32 within 1.5x of dense, 1 thread | "
                   f"{fast['slowdown']:.2f}x the dense time ({fast['model']}, policy "
                   f"{fast['policy']}) | {'yes' if fast['slowdown'] <= 1.5 else 'no'} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sparsities", default="0,30,50,70,90")
    ap.add_argument("--ks", default="8,16,32")
    ap.add_argument("--gptq", default="0:8,0:16,0:mix,50:16",
                    help="p:k points (no distillation) assigned with GPTQ calibration")
    ap.add_argument("--mixed", default="0", help="sparsities of extra rows with per-layer-type "
                    f"k {MIXED_LABEL} (q,k / v,attention-out / FFN); '' for none")
    ap.add_argument("--distill", default="0:16,0:32,50:32,0:mix,0:mixg",
                    help="p:k points that also run with distillation (k may be 'mix'; "
                    "a 'g' suffix calibrates, e.g. 'mixg')")
    ap.add_argument("--calibrate", type=int, default=1024,
                    help="sentences whose layer inputs guide GPTQ assignments (k with 'g')")
    ap.add_argument("--damp", type=float, default=0.1, help="GPTQ damping (k with 'g')")
    ap.add_argument("--headline", default="0:mix",
                    help="p:k configuration of the throughput table")
    ap.add_argument("--embedding-k", type=int, default=15,
                    help="shared values of the word embeddings (15 + the table's exact "
                    "zeros = 16 values = 4-bit codes)")
    ap.add_argument("--policy", default="csr", help="to_compact policy of the quality grid")
    ap.add_argument("--bench-policies",
                    default="csr,index_map,smallest,fastest,fastest-compact",
                    help="to_compact policies of the throughput table; 'fastest-compact' is "
                    f"'fastest' among {', '.join(LOW_ENTROPY)}")
    ap.add_argument("--distill-sentences", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--held-out", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--bench-sentences", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5,
                    help="throughput rounds (every model once per round; median)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny run: p in {0, 50}, k=16, 200 distillation sentences")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                    "compactnn-minilm.json"))
    ap.add_argument("--out", default=str(ROOT / "docs/results/minilm.md"))
    ap.add_argument("--plot", default=str(ROOT / "docs/results/minilm_size_vs_cosine.png"),
                    help="PNG to write (same folder as --out for the markdown link)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for compression, "
                    "distillation and quality (the throughput table always runs on 1)")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-grid", action="store_true",
                    help="throughput table only (prints it; writes neither --out nor --plot)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sparsities, args.ks, args.distill = "0,50", "16", "0:mix"
        args.gptq, args.calibrate = "0:16", 100
        args.distill_sentences, args.held_out, args.headline = 200, 100, "0:mix"
        args.bench_sentences, args.repeats = 64, 1
        args.cache = os.path.join(tempfile.gettempdir(), "compactnn-minilm-quick.json")
        if args.out == ap.get_default("out"):
            args.out = os.path.join(tempfile.gettempdir(), "minilm-quick.md")
            args.plot = os.path.join(tempfile.gettempdir(), "minilm-quick.png")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    distilled = _pairs(args.distill, args)
    n_train = max([args.distill_sentences, args.calibrate]
                  + [d[1] for _, _, d in distilled])
    train, held = sentence_split(n_train, args.held_out, seed=0)
    pristine = T.load_minilm()
    original = os.path.getsize(T.model_dir() / "model.safetensors")
    data = _Data(pristine, train, held, original)

    cache: dict = {}
    if os.path.exists(args.cache):
        with open(args.cache) as f:
            cache = json.load(f)
    grid: list[tuple[float, str, Distill]] = [
        (float(p), _k_token(k), None) for p in filter(None, args.sparsities.split(","))
        for k in filter(None, args.ks.split(","))]
    grid += [(float(p), "mix", None) for p in filter(None, args.mixed.split(","))]
    grid += [(p, k + "g", None) for p, k, _ in _pairs(args.gptq, args)]
    grid += distilled
    if args.no_grid:
        grid, args.out, args.plot = [], "", ""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for p, k, d in grid:
            key = _key(p, k, d, args)
            if key not in cache:
                print(f"  p={p:g}% k={k} distillation={d} ...", flush=True)
                cache[key] = run_row(pristine, p, k, d, data, args, folder)
                with open(args.cache, "w") as f:
                    json.dump(cache, f, indent=1)
            rows.append(cache[key])
            r = cache[key]
            print(f"    Linear {r['linear_ratio']:.1f}x, file {r['file_ratio']:.1f}x, "
                  f"cos {r['cosine_mean']:.4f}, top1 {r['top1']:.3f}, top5 {r['top5']:.3f}",
                  flush=True)
    qtab = quality_table(rows) if rows else ""
    print("\n" + qtab)
    speed = ""
    if not args.no_speed:
        (hp, hk, _), = _pairs(args.headline, args)
        srows = throughput(pristine, hp, hk, data, args)
        speed = speed_table(srows)
        print(speed)
        speed_note = (f"Configuration p={hp:g}%, k={_label(hk)} "
                      f"(not distilled: same structure); {args.bench_sentences} held-out "
                      f"sentences, batch {args.batch_size} (~{srows[0]['columns']} token "
                      f"columns per product), median of {args.repeats} round-robin rounds, "
                      "1 thread.")
        print(speed_note)
    if args.out:
        cmd = "python benchmarks/minilm.py " + " ".join(argv if argv is not None
                                                        else sys.argv[1:])
        text = [
            "# all-MiniLM-L6-v2 compressed end to end\n",
            f"Command: `{cmd.strip()}`  ",
            f"Machine: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores shared with other jobs (timings are contended); "
            f"torch {torch.__version__}.\n",
            f"Original `model.safetensors`: {original:,} bytes (float32, incl. the unused "
            f"pooler). Linear weights: 36 layers, {rows[0]['weights']:,} weights "
            f"({4 * rows[0]['weights']:,} bytes as float32; \"Linear bytes\" counts the "
            "stored weight arrays, the 0.1 MB of float32 biases are in the file size). "
            f"Word embeddings shared with k={args.embedding_k} and packed to "
            f"{rows[0]['embedding_bits']}-bit codes "
            f"({rows[0]['embedding_bytes']:,} bytes). Distillation (\"distilled\": epochs "
            "x generated sentences): Adam, cosine learning-rate decay from "
            f"{args.lr:g}, batch 32, no dropout. Quality: {len(held)} held-out generated "
            "sentences (never distilled on), "
            "compact file reloaded with `compactnn.load` and encoded through the compact "
            f"layers (runtime policy `{args.policy}`, storage `auto`).\n",
            "## Size vs quality\n", qtab,
            f"![size vs cosine]({os.path.basename(args.plot)})\n",
        ]
        if speed:
            text += ["## Encode throughput\n", speed, speed_note + "\n",
                     "## Targets\n", targets(rows, srows)]
        notes = ""  # hand-written analysis below the marker survives a regeneration
        if os.path.exists(args.out):
            with open(args.out) as f:
                old = f.read()
            if NOTES_MARKER in old:
                notes = old[old.index(NOTES_MARKER):]
        with open(args.out, "w") as f:
            f.write("\n".join(text) + ("\n" + notes if notes else ""))
        print(f"wrote {args.out}")
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
