"""Sharing allocation for all-MiniLM-L6-v2, judged on the validation split.

Each row shares the 36 Linear layers with nearest-value k-means (no GPTQ, no
distillation, so a row costs seconds) with ``k`` values per layer type (query, key,
value, attention output, intermediate, output), or shares only the word embeddings
(one codebook, or each row divided by its standard deviation first:
``compactnn.zoo.transformer.share_embeddings_``), and reports the mean code entropy of
the Linear weights (what the Huffman-coded formats store, about) and the quality
against the original model on ``--validation`` samples of each training corpus's
validation split (``compactnn.zoo.texts.validation_texts``; never jargon or the
evaluation parts, which only ``benchmarks/minilm.py`` reports). The ``mixb`` points of
``benchmarks/minilm.py`` use the allocation chosen here.

Usage: python benchmarks/minilm_alloc.py [--linear 8,8,16,16,12,12 ...] [--embeddings 15]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from _docs import save as save_results
from _docs import table

from compactnn.bench.embeddings import embedding_quality
from compactnn.transforms.quantize import kmeans_1d
from compactnn.zoo import transformer as T
from compactnn.zoo.texts import TRAIN_CORPORA, validation_texts

TYPES = ("query", "key", "value", "attention.output.dense", "intermediate.dense",
         "output.dense")  # matched in this order: the attention output before "output"
DEFAULT = ["8,8,16,16,12,12", "6,8,16,12,16,12", "6,8,16,14,16,12", "6,7,16,14,16,12",
           "6,8,16,16,16,12", "6,6,16,16,16,12", "6,8,24,12,14,12", "8,8,16,12,14,14"]


def layer_type(name: str) -> int:
    """Index in ``TYPES`` of a Linear layer's name."""
    return next(i for i, t in enumerate(TYPES) if name.endswith(t))


def entropy(assign: np.ndarray) -> float:
    """Bits per code of the empirical distribution of ``assign``."""
    p = np.unique(assign, return_counts=True)[1] / assign.size
    return float(-(p * np.log2(p)).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--linear", nargs="*", default=DEFAULT,
                    help="k per layer type: query,key,value,attention-output,intermediate,output")
    ap.add_argument("--embeddings", type=int, nargs="*", default=[15],
                    help="values of the word embeddings' rows (each: one codebook, row-scaled)")
    ap.add_argument("--validation", type=int, default=100, help="samples per corpus")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    original = T.load_minilm()
    texts = [s for c in TRAIN_CORPORA for s in validation_texts(c, args.validation)]
    reference = T.encode(original, texts)
    linear = {n: m for n, m in original.named_modules() if isinstance(m, torch.nn.Linear)}
    fits: dict[tuple[str, int], tuple[torch.Tensor, float]] = {}

    def fit(name: str, k: int) -> tuple[torch.Tensor, float]:
        if (name, k) not in fits:
            w = linear[name].weight.detach()
            q = kmeans_1d(w.reshape(-1).numpy(), k)
            fits[name, k] = (torch.from_numpy(q.codebook.astype(np.float32)[q.assign]
                                              .reshape(w.shape)), entropy(q.assign))
        return fits[name, k]

    def quality(model) -> dict:
        return embedding_quality(reference, T.encode(model, texts))

    rows = []
    for spec in args.linear:
        ks = [int(k) for k in spec.split(",")]
        if len(ks) != len(TYPES):
            raise SystemExit(f"--linear {spec!r}: expected {len(TYPES)} values")
        model, bits, count = copy.deepcopy(original), 0.0, 0
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear):
                w, h = fit(name, ks[layer_type(name)])
                m.weight.data = w.clone()
                bits, count = bits + h * w.numel(), count + w.numel()
        q = quality(model)
        rows.append(["Linear", "/".join(map(str, ks)), bits / count, 1 - q["cosine_mean"],
                     q["top1"]])
        print(rows[-1], flush=True)
    for k in args.embeddings:
        for scaled in (False, True):
            model = copy.deepcopy(original)
            T.share_embeddings_(model, k, row_scaled=scaled)
            q = quality(model)
            rows.append(["word embeddings", f"{k}{', row-scaled' if scaled else ''}", None,
                         1 - q["cosine_mean"], q["top1"]])
            print(rows[-1], flush=True)
    cols = [("shared", "", ":--"), ("k", "", ":--"), ("Linear bits / weight", "{:.3f}", "--:"),
            ("1 - mean cos", "{:.5f}", "--:"), ("top-1", "{:.3f}", "--:")]
    text = (f"Nearest-value sharing, no GPTQ, no distillation; {args.validation} validation "
            f"samples of each of {', '.join(TRAIN_CORPORA)}. k per Linear layer type: "
            "query / key / value / attention output / intermediate / output. Bits: the mean "
            "empirical entropy of the codes.")
    save_results("minilm_alloc", [table(cols, rows)], text=text, summary=None,
                 raw={"rows": rows}, page="docs/results/minilm.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
