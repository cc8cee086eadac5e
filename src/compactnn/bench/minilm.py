"""Measurements of all-MiniLM-L6-v2 and its compact versions: embedding quality
against the original per text corpus (:func:`evaluate`, on the evaluation parts that
:mod:`compactnn.zoo.texts` names), encode throughput (:func:`throughput`) and the
original model's per-layer table (:func:`describe`); what ``compactnn eval / bench /
inspect minilm`` print and ``benchmarks/minilm.py`` reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from compactnn.bench import threads
from compactnn.bench.compare import text_table
from compactnn.bench.embeddings import embedding_quality, encode_throughput
from compactnn.coding import entropy_bits
from compactnn.nn import to_dense
from compactnn.zoo import texts as text_samples
from compactnn.zoo.corpora import CORPORA, is_installed, load_corpus
from compactnn.zoo.sentences import sentence_split
from compactnn.zoo.texts import EVAL_CORPORA, UNSEEN
from compactnn.zoo.transformer import MODEL_NAME, encode, load_minilm, original_bytes

__all__ = ["evaluate", "format_quality", "describe", "throughput"]


def evaluate(model: Any, n: int | None = None,
             corpora: tuple[str, ...] = EVAL_CORPORA) -> dict[str, dict[str, float]]:
    """Quality of a (compact) MiniLM against the original, per corpus: ``{corpus:
    embedding_quality}`` on the first ``n`` (default ``compactnn.zoo.texts.HELD_OUT``)
    samples of each corpus's evaluation part (a text file's: see ``zoo.corpora.split``);
    a Debian corpus that is not installed maps to ``{"missing": <apt-get command>}``."""
    n = text_samples.HELD_OUT if n is None else n
    original = load_minilm()
    out: dict[str, dict[str, float]] = {}
    for name in corpora:  # a name of zoo.corpora, or a text file (one sample per line)
        if name in CORPORA and not is_installed(name):
            out[name] = {"missing": CORPORA[name].install_hint()}  # type: ignore[dict-item]
            continue
        texts = load_corpus(name, "eval", n)
        out[name] = embedding_quality(encode(original, texts), encode(model, texts))
        out[name]["samples"] = float(len(texts))
    return out


def format_quality(quality: dict[str, dict[str, float]]) -> str:
    """One line per corpus: cosine mean / min, top-1 / top-5 neighbour agreement."""
    lines = []
    for name, q in quality.items():
        tag = f"{name}{' (unseen domain)' if name in UNSEEN else ''}"
        if "missing" in q:
            lines.append(f"  {tag}: not installed ({q['missing']})")
            continue
        lines.append(f"  {tag}: cosine_mean {q['cosine_mean']:.4f}, cosine_min "
                     f"{q['cosine_min']:.4f}, top1 {q['top1']:.4f}, top5 {q['top5']:.4f} "
                     f"({int(q['samples'])} samples)")
    return "\n".join(lines)


def describe(folder: str | None = None) -> str:
    """Per-layer table of the original model's Linear layers (float32, before any
    compression; the bundled model, or that of a sentence-encoder ``folder``): shape,
    bytes, entropy bound in bits per weight; then the totals."""
    model = load_minilm(folder)
    rows = [("layer", "shape", "float32 bytes", "entropy b/w")]
    weights = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            W = m.weight.detach().numpy()
            weights += W.size
            rows.append((name, f"{W.shape[0]}x{W.shape[1]}", str(4 * W.size),
                         f"{entropy_bits(np.ascontiguousarray(W)) / W.size:.3f}"))
    rows.append(("total Linear", "", str(4 * weights), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    params = sum(p.numel() for p in model.parameters())
    label = MODEL_NAME if folder is None else folder
    return "\n".join(lines) + (f"\n{label}: {params} parameters, model.safetensors "
                               f"{original_bytes(folder)} bytes (float32, original)")


def throughput(model: Any, file_bytes: int | None, batch_sizes: list[int], n_threads: int,
               n_sentences: int | None = None, repeats: int = 3) -> str:
    """Encode throughput table: original model, the file's dense twin, the compact model
    (``model=None``: the original model alone), on the first ``n_sentences`` (default
    ``compactnn.zoo.texts.BENCH_SENTENCES``) held-out generated sentences."""
    n_sentences = text_samples.BENCH_SENTENCES if n_sentences is None else n_sentences
    _, held = sentence_split(0, n_sentences)
    models = [("original float32", load_minilm(), original_bytes())]
    if model is not None:
        models += [("dense twin (decoded weights)", to_dense(model), None),
                   ("compact", model, file_bytes)]
    rows = [("model", "file bytes") + tuple(f"b={b} (sent/s)" for b in batch_sizes)]
    with threads(n_threads):
        for label, m, size in models:
            rates = [encode_throughput(m, held, b, repeats) for b in batch_sizes]
            rows.append((label, "-" if size is None else str(size))
                        + tuple(f"{r:.1f}" for r in rates))
    return text_table(rows) + (f"\n({n_sentences} held-out sentences, median of {repeats} "
                               f"runs, {n_threads} thread(s))")
