"""The MiniLM kind of the ``compactnn`` commands (all-MiniLM-L6-v2 by name, or a file
whose zoo entry names ``minilm``).

- ``compactnn compress minilm --recipe R [--embedding-k K] [--sentences N] -o ckpt``:
  the pretrained model, the recipe on its 36 Linear layers with ``finetune`` steps that
  distil the original embeddings of N real-text samples (:func:`training_texts`: the
  training parts of :data:`TRAIN_CORPORA`), the word embeddings optionally shared (K
  values) and packed; writes a checkpoint that ``convert`` reads.
- ``compactnn convert minilm -o file.cnn``: the uncompressed pretrained model converted
  as it is (a baseline); a compressed checkpoint converts through the generic path.
  Policy ``fastest`` times each layer at ``--batch-size`` sentences times the mean
  sentence length in tokens (:func:`columns`), the columns its products really have.
- ``compactnn inspect minilm``: the original model's 36 Linear layers (shape, float32
  bytes, entropy bound) and its file size, before any compression.
- ``compactnn eval file.cnn`` / ``bench file.cnn``: embedding quality against the
  original model per evaluation corpus (:func:`evaluate`); encode throughput
  (sentences/s) of the compact model, its dense twin and the original model
  (``bench minilm``: the original model alone).

Quality is measured on the first :data:`HELD_OUT` samples of the evaluation part of
each corpus of :data:`EVAL_CORPORA` (``compactnn.zoo.corpora``): ``jargon`` is a source
that no calibration or distillation sample comes from; the others' evaluation parts
never appear in their training parts; ``generated`` is the template corpus.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from compactnn.cli.common import recipe, threads_of
from compactnn.cli.models import Kind, Source
from compactnn.errors import UserError

__all__ = ["KIND", "MiniLMKind", "TRAIN_CORPORA", "EVAL_CORPORA", "is_minilm",
           "original_bytes", "pretrained", "training_texts", "compress", "columns", "describe",
           "evaluate", "format_quality", "bench"]


HELD_OUT = 500
BENCH_SENTENCES = 256
# calibration and distillation text: real corpora of three styles plus the templates;
# 'jargon' is kept out of all of them as the unseen domain of the evaluation
TRAIN_CORPORA = ("wordnet", "python-docs", "bible", "generated")
EVAL_CORPORA = ("jargon", "wordnet", "python-docs", "bible", "generated")
UNSEEN = ("jargon",)


def is_minilm(name: str) -> bool:
    """Whether a CLI model argument names all-MiniLM-L6-v2 (and is not a file)."""
    from compactnn.zoo.transformer import is_model_name

    return is_model_name(name) and not os.path.exists(name)


def original_bytes() -> int:
    """Size of the original float32 ``model.safetensors`` (the baseline of ratios)."""
    from compactnn.zoo.transformer import model_dir

    return os.path.getsize(model_dir() / "model.safetensors")


def pretrained() -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """``(model, zoo name, kwargs, info)`` of the pretrained model, like a checkpoint."""
    from compactnn.zoo.transformer import ZOO_NAME, load_minilm

    model = load_minilm()
    return model, ZOO_NAME, model.zoo_spec["kwargs"], {}


def training_texts(n: int, corpora: tuple[str, ...] = TRAIN_CORPORA) -> list[str]:
    """``n`` calibration / distillation samples: the training parts of ``corpora`` in
    turn (round robin), so every prefix is a balanced mix. Raises ``CorpusError`` (with
    the ``apt-get`` command) when a corpus is not installed."""
    from compactnn.zoo.corpora import load_corpus

    if n < 1:
        raise UserError(f"need at least one training sample, got {n}")
    share = -(-n // len(corpora))
    parts = [load_corpus(c, "train", share) for c in corpora]
    mixed = [p[i] for i in range(share) for p in parts if i < len(p)]
    return mixed[:n]


def evaluate(model: Any, n: int | None = None,
             corpora: tuple[str, ...] = EVAL_CORPORA) -> dict[str, dict[str, float]]:
    """Quality of a (compact) MiniLM against the original, per corpus: ``{corpus:
    embedding_quality}`` on the first ``n`` (default :data:`HELD_OUT`) samples of each
    corpus's evaluation part (a text file's: see ``zoo.corpora.split``); a Debian corpus
    that is not installed maps to ``{"missing": <apt-get command>}``."""
    from compactnn.bench.embeddings import embedding_quality
    from compactnn.zoo.corpora import CORPORA, is_installed, load_corpus
    from compactnn.zoo.transformer import encode, load_minilm

    n = HELD_OUT if n is None else n
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


def compress(steps: Any, output: str, *, embedding_k: int | None = None,
             sentences: int = 3000, progress: bool = True) -> dict[str, dict[str, float]]:
    """Compress the pretrained model with the recipe ``steps`` (the built-in one:
    ``compactnn.zoo.presets.RECIPES["minilm"]``, ``MIXED_SHARING`` with GPTQ on 1024
    samples + 2 epochs of distillation), calibrating and distilling on ``sentences``
    samples of :func:`training_texts`; save a checkpoint to ``output``; return
    :func:`evaluate`'s per-corpus quality."""
    from compactnn.zoo.checkpoint import save_checkpoint
    from compactnn.zoo.distill import compress_minilm_
    from compactnn.zoo.transformer import ZOO_NAME, load_minilm

    if sentences < 1:
        raise UserError(f"--sentences must be >= 1, got {sentences}")
    train = training_texts(sentences)
    model = load_minilm()
    report = compress_minilm_(model, steps, train, embedding_k=embedding_k,
                              progress=progress)
    print(report.table())
    quality = evaluate(model)
    save_checkpoint(model, output, ZOO_NAME, model.zoo_spec["kwargs"], metrics=quality,
                    recipe=steps.to_list(), distillation_sentences=sentences,
                    distillation_corpora=list(TRAIN_CORPORA), embedding_k=embedding_k)
    return quality


def columns(batch_size: int) -> int:
    """Columns of a Linear product when encoding ``batch_size`` sentences: the batch
    times the mean token count of the held-out sentences (what policy ``fastest`` should
    time)."""
    from compactnn.zoo.sentences import sentence_split
    from compactnn.zoo.transformer import load_minilm, tokenize

    _, held = sentence_split(0, HELD_OUT)
    tokens = tokenize(load_minilm(), held)["attention_mask"].sum(1).double().mean().item()
    return max(1, round(batch_size * tokens))


def describe() -> str:
    """Per-layer table of the original model's Linear layers (float32, before any
    compression): shape, bytes, entropy bound in bits per weight; then the totals."""
    import numpy as np
    from torch import nn

    from compactnn.coding import entropy_bits
    from compactnn.zoo.transformer import MODEL_NAME, load_minilm

    model = load_minilm()
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
    return "\n".join(lines) + (f"\n{MODEL_NAME}: {params} parameters, model.safetensors "
                               f"{original_bytes()} bytes (float32, original)")


def bench(model: Any, file_bytes: int | None, batch_sizes: list[int], n_threads: int,
          n_sentences: int | None = None, repeats: int = 3) -> str:
    """Encode throughput table: original model, the file's dense twin, the compact model
    (``model=None``: the original model alone)."""
    from compactnn.bench import threads
    from compactnn.bench.embeddings import encode_throughput
    from compactnn.nn import to_dense
    from compactnn.zoo.sentences import sentence_split
    from compactnn.zoo.transformer import load_minilm

    n_sentences = BENCH_SENTENCES if n_sentences is None else n_sentences
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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines) + (f"\n({n_sentences} held-out sentences, median of {repeats} "
                               f"runs, {n_threads} thread(s))")


class MiniLMKind(Kind):
    """all-MiniLM-L6-v2: by name (the pretrained model) or a file / checkpoint whose zoo
    entry names it; quality against the original per text corpus, throughput in
    sentences per second."""

    name = "minilm"

    def names(self, arg: str) -> bool:
        return is_minilm(arg)

    def holds(self, entry: dict[str, Any]) -> bool:
        from compactnn.zoo.transformer import ZOO_NAME

        spec = entry.get("zoo")
        return isinstance(spec, dict) and spec.get("name") == ZOO_NAME

    def source(self, arg: str) -> Source | None:
        if not is_minilm(arg):
            return None
        model, name, kwargs, info = pretrained()
        return Source(model, (name, kwargs), info, {"zoo": {"name": name, "kwargs": kwargs}})

    def compress(self, a: argparse.Namespace) -> None:
        q = compress(recipe(a.recipe), a.output, embedding_k=a.embedding_k,
                     sentences=a.sentences)
        print(f"vs the original, per held-out corpus:\n{format_quality(q)}")
        print(f"wrote {a.output}")

    def timing(self, src: Source, batch_size: int) -> tuple[int, Any]:
        return columns(batch_size), None  # sentences x tokens per product

    def dense_bytes(self, src: Source) -> int:
        return original_bytes()

    def describe(self, arg: str) -> str | None:
        return describe() if is_minilm(arg) else None

    def evaluate(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        return (f"{a.file} vs the original, per held-out corpus:\n"
                f"{format_quality(evaluate(model))}")

    def bench(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        return bench(model, None if info is None else info.file_bytes, a.batch_sizes,
                     threads_of(a))


KIND = MiniLMKind()
