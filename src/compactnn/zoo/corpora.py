"""Real English text for calibrating, distilling and judging sentence encoders, offline.

Four corpora install from Debian packages (``apt-get install -y <package>``, no other
download), each cleaned into sentences or short passages by its own cleaner:

- ``wordnet`` (package wordnet-base; WordNet 3.0 licence, Princeton, permissive): the
  glosses of ``data.{noun,verb,adj,adv}``, ``"word: definition."`` for each definition
  and each quoted example sentence.
- ``bible`` (bible-kjv, which reads the compressed text of bible-kjv-text; the King
  James text is in the public domain, the reader GPL-2+): the verses, as its ``bible``
  program prints them.
- ``jargon`` (jargon-text; public domain): sentences of the Jargon File 4.4.7 prose
  (entry headwords, tables and cross-reference braces dropped).
- ``python-docs`` (python3-doc; PSF licence): sentences of the Python documentation's
  reStructuredText sources (code, non-prose directives, tables dropped; inline markup
  stripped; the "what's new" release notes skipped).

``generated`` (:mod:`compactnn.zoo.sentences`) is available under the same API, and a
user's text file (one sample per line, UTF-8) goes through the same loader by path.

Every sample is whitespace-normalised (the cleaners: :mod:`compactnn.zoo.cleaners`,
re-exported here), kept if it has ``min_words`` to ``max_words``
words and is mostly letters, and deduplicated (case-insensitive). **Splits** are
deterministic and independent of file order: a sample's 64-bit BLAKE2b hash places it
in ``"eval"`` (the lowest ``EVAL_FRACTION`` of hash values) or ``"train"`` (the rest,
for calibration and distillation); within a part samples are ordered by hash, so the
first ``n`` are a fixed pseudo-random subset and a larger ``n`` extends it.

>>> train = load_corpus("wordnet", "train", 100)           # doctest: +SKIP
>>> held = load_corpus("jargon", "eval", 500)              # doctest: +SKIP
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from compactnn._validate import is_int
from compactnn.zoo.cleaners import (
    MAX_WORDS,
    MIN_WORDS,
    clean_bible,
    clean_jargon,
    clean_rst,
    clean_samples,
    clean_wordnet,
    split_sentences,
)
from compactnn.zoo.data import DatasetError

__all__ = [
    "CORPORA", "EVAL_FRACTION", "CorpusError", "Corpus", "corpus_names", "is_installed",
    "load_corpus", "load_text_file", "split", "split_sentences", "clean_samples",
    "clean_wordnet", "clean_bible", "clean_jargon", "clean_rst",
]

EVAL_FRACTION = 0.25


class CorpusError(DatasetError):
    """A corpus is missing or unreadable; the message says how to install it."""


@dataclass(frozen=True)
class Corpus:
    """A corpus from a Debian package: its files, the cleaner, a one-line description."""

    name: str
    package: str
    files: tuple[str, ...]
    licence: str
    description: str

    def install_hint(self) -> str:
        return f"apt-get install -y {self.package}"


_PYDOC = "/usr/share/doc/python3/html/_sources"
CORPORA: dict[str, Corpus] = {c.name: c for c in (
    Corpus("wordnet", "wordnet-base",
           tuple(f"/usr/share/wordnet/data.{p}" for p in ("noun", "verb", "adj", "adv")),
           "WordNet 3.0 licence", "WordNet glosses and example sentences"),
    Corpus("bible", "bible-kjv", ("/usr/lib/bible.data", "/usr/bin/bible"),
           "public domain (King James Version)", "King James Bible verses"),
    Corpus("jargon", "jargon-text", ("/usr/share/doc/jargon-text/jargon.txt.gz",),
           "public domain", "Jargon File 4.4.7 sentences"),
    Corpus("python-docs", "python3-doc", (_PYDOC,),
           "PSF licence", "Python documentation sentences"),
)}
GENERATED = "generated"


def corpus_names() -> list[str]:
    """The names ``load_corpus`` knows: the Debian corpora and ``generated``."""
    return [*CORPORA, GENERATED]


def is_installed(name: str) -> bool:
    """Whether the files of corpus ``name`` are present (``generated`` always is)."""
    if name == GENERATED:
        return True
    return all(os.path.exists(f) for f in _corpus(name).files)


def _corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; known: {', '.join(corpus_names())} "
                          "(or the path of a text file, one sample per line)")
    return CORPORA[name]


def _missing(c: Corpus, what: str) -> CorpusError:
    return CorpusError(f"corpus {c.name!r} is not installed ({what} missing): "
                       f"{c.install_hint()}")


# ---------------------------------------------------------------- readers

def _read_wordnet(c: Corpus) -> list[str]:
    out = []
    for f in c.files:
        out += clean_wordnet(Path(f).read_text(encoding="utf-8", errors="replace"))
    return out


def _read_bible(c: Corpus) -> list[str]:
    program = shutil.which("bible") or "/usr/bin/bible"
    try:
        done = subprocess.run([program, "-l", "100000", "Gen1:1-Rev22:21"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                              check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CorpusError(f"corpus 'bible': the bible program failed ({exc}); reinstall: "
                          f"{c.install_hint()} bible-kjv-text") from None
    return clean_bible(done.stdout.decode("utf-8", errors="replace"))


def _read_jargon(c: Corpus) -> list[str]:
    with gzip.open(c.files[0], "rt", encoding="utf-8", errors="replace") as f:
        return clean_jargon(f.read())


def _read_pydocs(c: Corpus) -> list[str]:
    out = []
    for f in sorted(Path(c.files[0]).rglob("*.rst.txt")):
        if "whatsnew" in f.parts or "changelog" in f.name:  # release notes: lists of changes
            continue
        out += clean_rst(f.read_text(encoding="utf-8", errors="replace"))
    return out


_READERS: dict[str, Callable[[Corpus], list[str]]] = {
    "wordnet": _read_wordnet, "bible": _read_bible, "jargon": _read_jargon,
    "python-docs": _read_pydocs}


@functools.lru_cache(maxsize=16)
def _samples(name: str, min_words: int, max_words: int) -> tuple[str, ...]:
    if name == GENERATED:
        from compactnn.zoo.sentences import generate_sentences

        return tuple(clean_samples(generate_sentences(20000), min_words, max_words))
    c = _corpus(name)
    for f in c.files:
        if not os.path.exists(f):
            raise _missing(c, f)
    try:
        raw = _READERS[name](c)
    except OSError as exc:
        raise CorpusError(f"corpus {name!r} could not be read ({exc}); reinstall: "
                          f"{c.install_hint()}") from None
    return tuple(clean_samples(raw, min_words, max_words))


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def split(samples: Sequence[str], part: str, eval_fraction: float = EVAL_FRACTION
          ) -> list[str]:
    """The ``"train"`` or ``"eval"`` part of ``samples`` (or ``"all"``), ordered by the
    samples' hashes: a sample's part depends on its text alone.

    >>> s = [f"sample number {i} of many" for i in range(100)]
    >>> tr, ev = split(s, "train"), split(s, "eval")
    >>> len(tr) + len(ev), set(tr).isdisjoint(ev), split(s[::-1], "eval") == ev
    (100, True, True)
    """
    if part not in ("train", "eval", "all"):
        raise ValueError(f"part must be 'train', 'eval' or 'all', got {part!r}")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")
    cut = int(eval_fraction * 2 ** 64)
    keyed = sorted((_bucket(s), s) for s in samples)
    if part == "all":
        return [s for _, s in keyed]
    return [s for b, s in keyed if (b < cut) == (part == "eval")]


def load_text_file(path: str | os.PathLike, min_words: int = 1,
                   max_words: int = 256) -> list[str]:
    """A user's UTF-8 text file, one sample per line, cleaned like the corpora
    (whitespace, length limits, mostly letters, duplicates dropped), in file order."""
    p = Path(path)
    if not p.is_file():
        raise CorpusError(f"text file {str(p)!r} not found (expected one sample per line)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out = clean_samples(lines, min_words, max_words)
    if not out:
        raise CorpusError(f"{p}: no usable samples (one sample per line, "
                          f"{min_words}-{max_words} words)")
    return out


def load_corpus(name: str | os.PathLike, part: str = "all", n: int | None = None, *,
                min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> list[str]:
    """Up to ``n`` samples of part ``part`` (``"train"``, ``"eval"`` or ``"all"``) of a
    corpus: a name of :data:`CORPORA`, ``"generated"``, or the path of a text file
    (one sample per line). Deterministic: see :func:`split`.

    Raises:
        CorpusError: unknown name, or the corpus's Debian package is not installed
            (the message gives the ``apt-get install`` command).
    """
    if n is not None and not is_int(n, 0, numpy=False):
        raise ValueError(f"n must be None or an integer >= 0, got {n!r}")
    key = os.fspath(name)
    if key in CORPORA or key == GENERATED:
        samples: Sequence[str] = _samples(key, min_words, max_words)
    elif os.sep in key or os.path.exists(key) or key.endswith(".txt"):
        samples = load_text_file(key, min_words, max_words)
    else:
        _corpus(key)  # raises: unknown corpus
    out = split(samples, part)
    return out if n is None else out[:n]
