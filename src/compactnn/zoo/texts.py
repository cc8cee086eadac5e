"""The text all-MiniLM-L6-v2 is calibrated, distilled and judged on
(:mod:`compactnn.zoo.corpora`): which corpora, how many samples, and the samples.

Calibration and distillation take the training parts of :data:`TRAIN_CORPORA` (real
corpora of three styles plus the templates) in turn (:func:`training_texts`); quality
is measured on the first :data:`HELD_OUT` samples of the evaluation part of each
corpus of :data:`EVAL_CORPORA`: ``jargon`` (:data:`UNSEEN`) is a source that no
calibration or distillation sample comes from; the others' evaluation parts never
appear in their training parts; ``generated`` is the template corpus. Choices
(configurations, loss weights) are made on a third part, :func:`validation_texts`:
the last :data:`VALIDATION` samples of each training part, which
:func:`training_texts` never returns; the evaluation parts only report.
"""

from __future__ import annotations

from compactnn._validate import integer

__all__ = ["HELD_OUT", "VALIDATION", "BENCH_SENTENCES", "TRAIN_CORPORA", "EVAL_CORPORA",
           "UNSEEN", "training_texts", "validation_texts", "columns"]

HELD_OUT = 500
VALIDATION = 500
BENCH_SENTENCES = 256
# calibration and distillation text: real corpora of three styles plus the templates;
# 'jargon' is kept out of all of them as the unseen domain of the evaluation
TRAIN_CORPORA = ("wordnet", "python-docs", "bible", "generated")
EVAL_CORPORA = ("jargon", "wordnet", "python-docs", "bible", "generated")
UNSEEN = ("jargon",)


def training_texts(n: int, corpora: tuple[str, ...] = TRAIN_CORPORA) -> list[str]:
    """``n`` calibration / distillation samples: the training parts of ``corpora`` in
    turn (round robin), so every prefix is a balanced mix. Raises ``CorpusError`` (with
    the ``apt-get`` command) when a corpus is not installed. The last
    :data:`VALIDATION` samples of each training part are left out (:func:`validation_texts`)."""
    from compactnn.zoo.corpora import load_corpus

    integer("n", n, 1, numpy=False)
    share = -(-n // len(corpora))
    parts = [load_corpus(c, "train")[:-VALIDATION][:share] for c in corpora]
    mixed = [p[i] for i in range(share) for p in parts if i < len(p)]
    return mixed[:n]


def validation_texts(corpus: str, n: int = VALIDATION) -> list[str]:
    """The validation samples of a training corpus: the last ``n`` (at most
    :data:`VALIDATION`) of its training part (samples ordered by hash), disjoint from
    every :func:`training_texts` and from the evaluation part. For choices; report on
    the evaluation parts."""
    from compactnn.zoo.corpora import load_corpus

    integer("n", n, 1, VALIDATION, numpy=False)
    part = load_corpus(corpus, "train")
    return part[len(part) - VALIDATION:][:n]


def columns(batch_size: int) -> int:
    """Columns of a Linear product when encoding ``batch_size`` sentences: the batch
    times the mean token count of the held-out generated sentences (what policy
    ``fastest`` should time)."""
    from compactnn.zoo.sentences import sentence_split
    from compactnn.zoo.transformer import load_minilm, tokenize

    _, held = sentence_split(0, HELD_OUT)
    tokens = tokenize(load_minilm(), held)["attention_mask"].sum(1).double().mean().item()
    return max(1, round(batch_size * tokens))
