"""Cleaners that turn raw text into samples: sentence splitting, the shared sample
filter (:func:`clean_samples`: whitespace, length, mostly letters, no URL, no
duplicates) and one cleaner per corpus format (WordNet ``data.*`` lines, the ``bible``
program's verses, the Jargon File's plain text, reStructuredText). The corpora that
use them: :mod:`compactnn.zoo.corpora`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["MIN_WORDS", "MAX_WORDS", "split_sentences", "clean_samples", "clean_wordnet",
           "clean_bible", "clean_jargon", "clean_rst"]

MIN_WORDS, MAX_WORDS = 4, 64


# ---------------------------------------------------------------- cleaning helpers

_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|viz|Mr|Mrs|Ms|Dr|St|No|Fig|approx|"
                     r"esp|incl|ca|al|Jr|Sr|Inc|Ltd|Co)|\b[A-Z])\.$")
_BOUNDARY = re.compile(r"(?<=[.!?])[\"”’')\]]*\s+(?=[\"“‘'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences at ``.``/``!``/``?`` followed by a capital or digit
    (common abbreviations and initials do not end a sentence).

    >>> split_sentences("It works, e.g. here. Dr. Who said so! Did he? Yes.")
    ['It works, e.g. here.', 'Dr. Who said so!', 'Did he?', 'Yes.']
    """
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        head = text[start:m.start()]
        if _ABBREV.search(head.rstrip("\"”’')]")):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def _normal(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def clean_samples(samples: Iterable[str], min_words: int = MIN_WORDS,
                  max_words: int = MAX_WORDS) -> list[str]:
    """Whitespace-normalised samples with ``min_words`` to ``max_words`` words, at least
    60 % letters among their non-space characters, no URL, first occurrence of each
    (case-insensitive) kept, in input order.

    >>> clean_samples(["A  short one here.", "a short ONE here.", "x = f(1, 2) + 3 - 4",
    ...                "Too short."])
    ['A short one here.']
    """
    if min_words < 1 or max_words < min_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    seen: set[str] = set()
    out = []
    for s in samples:
        s = _normal(s)
        words = s.split(" ")
        if not s or not min_words <= len(words) <= max_words or "://" in s:
            continue
        chars = s.replace(" ", "")
        if sum(ch.isalpha() for ch in chars) < 0.6 * len(chars):
            continue
        key = s.casefold()
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


# ---------------------------------------------------------------- per-corpus cleaners

def clean_wordnet(text: str) -> list[str]:
    """Samples of WordNet ``data.*`` lines: ``"lemma: definition."`` for each definition
    of a synset's gloss and each quoted example sentence (licence header lines, which
    start with spaces, are skipped).

    >>> clean_wordnet('00977301 04 n 01 strike 2 005 @ 00972621 n 0000 | an attack '
    ...               'meant to seize an objective; "the strike was scheduled to begin at dawn"')
    ['strike: an attack meant to seize an objective.', 'the strike was scheduled to begin at dawn']
    """
    out = []
    for line in text.splitlines():
        if not line[:1].isdigit() or " | " not in line:
            continue
        head, gloss = line.split(" | ", 1)
        fields = head.split()
        lemma = fields[4].replace("_", " ") if len(fields) > 4 else ""
        lemma = re.sub(r"\([a-z]+\)$", "", lemma)  # adjective markers: (a), (p), (ip)
        for part in re.findall(r'"[^"]*"|[^;"]+', gloss):
            part = part.strip().strip(";").strip()
            if part.startswith('"'):
                part = part.strip('"').strip()
                if part:
                    out.append(part)
            elif part:
                out.append(f"{lemma}: {part.rstrip('.')}." if lemma else part)
    return out


_VERSE = re.compile(r"^\s+\d+ (.+)$")


def clean_bible(text: str) -> list[str]:
    """Verses of the ``bible`` program's output (``"  <n> <verse>"`` lines; book and
    chapter headings dropped).

    >>> clean_bible("\\nGenesis 1\\n\\n  1 In the beginning God created the heaven.\\n")
    ['In the beginning God created the heaven.']
    """
    return [m.group(1).strip() for line in text.splitlines() if (m := _VERSE.match(line))]


_BOX = re.compile(r"[\u2500-\u257f]")


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def clean_jargon(text: str) -> list[str]:
    """Sentences of the Jargon File's plain text: prose paragraphs only (no entry
    headword lines ``:word: n.``, tables, rules or the table of contents), cross-reference
    braces ``{word}`` and leading usage tags ``[common]`` removed.

    >>> clean_jargon("   :baroque: adj.\\n\\n   [common] Feature-encrusted; complex. Said of\\n"
    ...              "   hardware or {software} designs.\\n")
    ['Feature-encrusted; complex.', 'Said of hardware or software designs.']
    """
    out = []
    for para in _paragraphs(text):
        if _BOX.search(para) or re.match(r"\s*:[^:\n]+:", para):
            continue
        body = _normal(para)
        if len(body.split()) < MIN_WORDS:  # headings, table-of-contents lines
            continue
        body = re.sub(r"\{([^{}]*)\}", r"\1", body)
        body = re.sub(r"^(?:\d+\.\s*)?(?:\[[^\]]*\]\s*)?", "", body)
        out += split_sentences(body)
    return out


_PROSE_DIRECTIVES = {"function", "method", "class", "attribute", "data", "exception",
                     "decorator", "decoratormethod", "classmethod", "staticmethod",
                     "abstractmethod", "coroutinefunction", "coroutinemethod", "describe",
                     "note", "warning", "seealso", "important", "tip", "attention", "caution",
                     "versionadded", "versionchanged", "deprecated", "deprecated-removed",
                     "impl-detail", "glossary", "opcode", "option", "envvar", "cmdoption",
                     "c:function", "c:type", "c:macro", "c:member", "c:var", "pdbcommand",
                     "module", "topic", "sidebar", "admonition"}
_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+([\w:.-]+)::(.*)$")
_MARKUP_LINE = re.compile(r"^\s*(?:[=\-~^\"'`#*+_.:]{3,}|\+[-=+]+\+|\|.*\|\s*$|>>>|\.\.\.\s)")


def _inline(text: str) -> str:
    """reStructuredText inline markup -> plain text."""
    def role(m: re.Match) -> str:
        t = m.group(1).lstrip("!~")
        t = re.sub(r"\s*<[^<>]*>$", "", t)  # "title <target>"
        return t
    text = _ROLE.sub(role, text)
    text = re.sub(r"`([^`<]*?)\s*<[^`]*>`__?", r"\1", text)   # `text <url>`_
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`]*)`_{0,2}", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"\|([\w-]+)\|", r"\1", text)
    text = re.sub(r"\[#?\w*\]_", "", text)
    return text.replace("\\", "")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def clean_rst(text: str) -> list[str]:
    """Sentences of a reStructuredText document's prose: paragraphs outside literal
    blocks (``::``), non-prose directives (code, index, toctree, tables...), comments,
    doctest lines, tables, section rules and field lists; list markers and inline
    markup (roles, literals, links, emphasis) removed.

    >>> clean_rst("Title\\n=====\\n\\nUse the :func:`len` function for this, for example::\\n\\n"
    ...           "   len(x)\\n\\n.. note::\\n   It returns ``int`` values always.\\n")
    ['Use the len function for this, for example:', 'It returns int values always.']
    """
    out: list[str] = []
    skip_deeper: int | None = None  # skip lines indented deeper than this
    para: list[str] = []

    def flush() -> None:
        if para:
            body = _inline(_normal(" ".join(para)))
            if body.endswith("::"):
                body = body[:-1]
            out.extend(split_sentences(body))
            para.clear()

    for line in text.splitlines():
        if not line.strip():
            flush()
            continue
        ind = _indent(line)
        if skip_deeper is not None:
            if ind > skip_deeper:
                continue
            skip_deeper = None
        d = _DIRECTIVE.match(line)
        if d:
            flush()
            name = d.group(1)
            if name in _PROSE_DIRECTIVES and name in {"note", "warning", "seealso", "important",
                                                      "tip", "attention", "caution",
                                                      "versionadded", "versionchanged",
                                                      "deprecated", "impl-detail"}:
                rest = d.group(2).strip()
                rest = re.sub(r"^\d+(\.\d+)*\s*", "", rest)  # version numbers
                if rest:
                    para.append(rest)
            elif name not in _PROSE_DIRECTIVES:
                skip_deeper = ind
            continue
        stripped = line.strip()
        if stripped.startswith(".."):  # comment or target: skip its block
            flush()
            skip_deeper = ind
            continue
        if _MARKUP_LINE.match(line) or re.match(r"^:[\w -]+:", stripped):
            if re.fullmatch(r"([=\-~^\"'`#*+_.:])\1{2,}", stripped) and len(para) == 1:
                para.clear()  # a section title above its underline
            flush()
            continue
        if para and ind > _indent(para[0]) + 1 and para[-1].rstrip().endswith("::"):
            flush()
            skip_deeper = ind - 1
            continue
        item = re.match(r"^(?:[*\-+•]|#\.|\d+\.|\(\w\))\s+", stripped)
        if item:
            flush()
            stripped = stripped[item.end():]
        para.append(stripped)
        if stripped.endswith("::"):
            flush()
            skip_deeper = ind
    flush()
    return out
