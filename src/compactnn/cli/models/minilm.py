"""The MiniLM kind of the ``compactnn`` commands: a sentence encoder (BERT, mean pooling,
L2 normalisation) from a sentence-transformers folder of the all-MiniLM-L6-v2 layout
(``compactnn.zoo.transformer.is_sentence_encoder_dir``), ``minilm`` (an alias of the
bundled all-MiniLM-L6-v2 folder: the same commands on that folder write the same
bytes), or a file whose zoo entry names ``minilm``.

- ``compactnn compress minilm --recipe R [--embedding-k K [--embedding-scaled]]
  [--sentences N] -o ckpt``:
  the pretrained model, the recipe on its 36 Linear layers with ``finetune`` steps that
  distil the original embeddings of N real-text samples
  (:func:`compactnn.zoo.texts.training_texts`), the word embeddings optionally shared
  (K values; ``--embedding-scaled``: each row divided by its own scale first) and packed;
  writes a checkpoint that ``convert`` reads.
- ``compactnn convert minilm -o file.cnn``: the uncompressed pretrained model converted
  as it is (a baseline); a compressed checkpoint converts through the generic path.
  Policy ``fastest`` times each layer at ``--batch-size`` sentences times the mean
  sentence length in tokens (:func:`compactnn.zoo.texts.columns`), the columns its
  products really have.
- ``compactnn inspect minilm``: the original model's 36 Linear layers (shape, float32
  bytes, entropy bound) and its file size, before any compression.
- ``compactnn eval file.cnn`` / ``bench file.cnn``: embedding quality against the
  original model per evaluation corpus (:func:`compactnn.bench.minilm.evaluate`);
  encode throughput (sentences/s) of the compact model, its dense twin and the
  original model (``bench minilm``: the original model alone).

The text and its corpora: :mod:`compactnn.zoo.texts`; the measurements:
:mod:`compactnn.bench.minilm`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from compactnn.cli.common import recipe, threads_of, writes
from compactnn.cli.models import Kind, Source
from compactnn.errors import UserError

__all__ = ["KIND", "MiniLMKind", "is_minilm", "folder_of", "pretrained", "compress"]


def is_minilm(name: str) -> bool:
    """Whether a CLI model argument names all-MiniLM-L6-v2 (and is not a file)."""
    from compactnn.zoo.transformer import is_model_name

    return is_model_name(name) and not os.path.exists(name)


def folder_of(arg: str) -> str | None:
    """The sentence-encoder folder a CLI model argument names: the bundled one for
    ``minilm``, the argument itself for a folder of that layout; ``None`` otherwise."""
    from compactnn.zoo.transformer import is_sentence_encoder_dir, model_dir

    if is_minilm(arg):
        return str(model_dir())
    return arg if is_sentence_encoder_dir(arg) else None


def pretrained(folder: str | None = None) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """``(model, zoo name, kwargs, info)`` of the pretrained model of ``folder`` (default:
    the bundled one), like a checkpoint."""
    from compactnn.zoo.transformer import ZOO_NAME, load_minilm

    model = load_minilm(folder)
    return model, ZOO_NAME, model.zoo_spec["kwargs"], {}


def compress(steps: Any, output: str, *, folder: str | None = None,
             embedding_k: int | None = None, embedding_scaled: bool = False,
             sentences: int = 3000,
             progress: bool = True, device: str | None = None,
             autocast: str | None = None) -> dict[str, dict[str, float]] | None:
    """Compress the pretrained model of ``folder`` (default: the bundled one) with the
    recipe ``steps`` (the built-in one: ``compactnn.zoo.presets.RECIPES["minilm"]``,
    ``MIXED_SHARING`` with GPTQ on 1024 samples + 2 epochs of distillation that may move
    the assignments), calibrating and distilling on ``sentences`` samples of
    :func:`compactnn.zoo.texts.training_texts` (calibration and distillation on
    ``device`` under ``autocast``); save a checkpoint to ``output``; return
    :func:`compactnn.bench.minilm.evaluate`'s per-corpus quality (``None`` on the ranks
    of a ``torchrun`` run other than rank 0, which writes)."""
    from compactnn.bench.minilm import evaluate
    from compactnn.zoo.checkpoint import save_checkpoint
    from compactnn.zoo.distill import compress_minilm_
    from compactnn.zoo.texts import TRAIN_CORPORA, training_texts
    from compactnn.zoo.transformer import ZOO_NAME, load_minilm

    if sentences < 1:
        raise UserError(f"--sentences must be >= 1, got {sentences}")
    if embedding_scaled and embedding_k is None:
        raise UserError("--embedding-scaled needs --embedding-k")
    train = training_texts(sentences)
    model = load_minilm(folder)
    report = compress_minilm_(model, steps, train, embedding_k=embedding_k,
                              embedding_scaled=embedding_scaled,
                              progress=progress and writes(), device=device,
                              autocast=autocast)
    if not writes():
        return None
    print(report.table())
    quality = evaluate(model)
    save_checkpoint(model, output, ZOO_NAME, model.zoo_spec["kwargs"], metrics=quality,
                    recipe=steps.to_list(), distillation_sentences=sentences,
                    distillation_corpora=list(TRAIN_CORPORA), embedding_k=embedding_k,
                    **({"embedding_scaled": True} if embedding_scaled else {}))
    return quality


class MiniLMKind(Kind):
    """all-MiniLM-L6-v2: by name (the pretrained model) or a file / checkpoint whose zoo
    entry names it; quality against the original per text corpus, throughput in
    sentences per second."""

    name = "minilm"

    def names(self, arg: str) -> bool:
        from compactnn.zoo.transformer import is_sentence_encoder_dir

        return is_minilm(arg) or is_sentence_encoder_dir(arg)

    def holds(self, entry: dict[str, Any]) -> bool:
        from compactnn.zoo.transformer import ZOO_NAME

        spec = entry.get("zoo")
        return isinstance(spec, dict) and spec.get("name") == ZOO_NAME

    def source(self, arg: str) -> Source | None:
        folder = folder_of(arg)
        if folder is None:
            return None
        model, name, kwargs, info = pretrained(folder)
        return Source(model, (name, kwargs), info, {"zoo": {"name": name, "kwargs": kwargs}})

    def compress(self, a: argparse.Namespace) -> None:
        from compactnn.bench.minilm import format_quality

        q = compress(recipe(a.recipe), a.output, folder=folder_of(a.checkpoint),
                     embedding_k=a.embedding_k, embedding_scaled=a.embedding_scaled,
                     sentences=a.sentences, device=a.device,
                     autocast=a.autocast)
        if q is None:
            return
        print(f"vs the original, per held-out corpus:\n{format_quality(q)}")
        print(f"wrote {a.output}")

    def timing(self, src: Source, batch_size: int) -> tuple[int, Any]:
        from compactnn.zoo.texts import columns

        return columns(batch_size), None  # sentences x tokens per product

    def dense_bytes(self, src: Source) -> int:
        from compactnn.zoo.transformer import original_bytes

        return original_bytes()

    def describe(self, arg: str) -> str | None:
        from compactnn.bench.minilm import describe

        folder = folder_of(arg)
        if folder is None:
            return None
        return describe(None if is_minilm(arg) else folder)

    def evaluate(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        from compactnn.bench.minilm import evaluate, format_quality

        return (f"{a.file} vs the original, per held-out corpus:\n"
                f"{format_quality(evaluate(model))}")

    def bench(self, a: argparse.Namespace, model: Any, info: Any) -> str:
        from compactnn.bench.minilm import throughput

        return throughput(model, None if info is None else info.file_bytes, a.batch_sizes,
                     threads_of(a))


KIND = MiniLMKind()
