"""Real-text corpora: the cleaners on snippets, deterministic splits, user files, the
missing-package error, and (when installed) the Debian corpora themselves."""

from __future__ import annotations

import dataclasses

import pytest

from compactnn.zoo import corpora as C


def test_wordnet_glosses_and_examples():
    line = ('01234567 04 n 02 first_strike 0 hit 1 001 @ 00972621 n 0000 | the initial use '
            'of nuclear weapons; considered feasible only rarely; "the president promised '
            'no first strike"  \n  1 This software and database is being provided\n')
    assert C.clean_wordnet(line) == [
        "first strike: the initial use of nuclear weapons.",
        "first strike: considered feasible only rarely.",
        "the president promised no first strike"]
    adj = "00001740 00 a 01 able(a) 0 005 | (usually followed by `to') having the means"
    assert C.clean_wordnet(adj) == ["able: (usually followed by `to') having the means."]


def test_bible_verses():
    out = "\nGenesis 1\n\n  1 In the beginning.\n  2 And the earth was.\nExodus 2\n  10 Go.\n"
    assert C.clean_bible(out) == ["In the beginning.", "And the earth was.", "Go."]


def test_jargon_prose_only():
    text = ("   :BASIC: /bay'·sic/, n.\n\n"
            "   A programming language, which for many years was the leading\n"
            "   cause of brain damage. See also {Pascal}.\n\n"
            "   ┌────┬────┐\n   │ NRL │ Naval Research │\n   └────┴────┘\n\n"
            "   2. [techspeak] Performance of dreary tasks all at one sitting.\n\n"
            "   Table of Contents\n")
    assert C.clean_jargon(text) == [
        "A programming language, which for many years was the leading cause of brain damage.",
        "See also Pascal.", "Performance of dreary tasks all at one sitting."]


def test_rst_drops_code_directives_and_markup():
    text = """.. _tut-if:

Control Flow
============

Perhaps the most well-known statement type is the :keyword:`if` statement.  For
example::

   >>> x = int(input("Please enter an integer: "))

.. index::
   statement: for

.. function:: len(s)

   Return the length (the number of items) of an object, see `the docs
   <https://example.org>`_ and :func:`~os.path.getsize`.

.. code-block:: python

   print("not prose at all, this is code")

* A list item with **bold** and ``literal`` text in it.

+------+------+
| a    | b    |
+------+------+
"""
    assert C.clean_rst(text) == [
        "Perhaps the most well-known statement type is the if statement.",
        "For example:",
        "Return the length (the number of items) of an object, see the docs and "
        "os.path.getsize.",
        "A list item with bold and literal text in it."]


def test_sentences_and_sample_filter():
    assert C.split_sentences("Use it, i.e. now. Then stop! Really? “Yes.” Fine") == [
        "Use it, i.e. now.", "Then stop!", "Really?", "“Yes.”", "Fine"]
    samples = ["One two three four.", "one  TWO three four.", "x = 1 + 2 - 3 * 4 / 5",
               "see https://example.org for more", "short", " ".join(["w"] * 70),
               "Four words are here."]
    assert C.clean_samples(samples) == ["One two three four.", "Four words are here."]
    assert C.clean_samples(samples, min_words=1, max_words=3) == ["short"]
    with pytest.raises(ValueError):
        C.clean_samples(samples, min_words=5, max_words=4)


def test_split_is_deterministic_disjoint_and_stable():
    samples = [f"sample sentence number {i} here" for i in range(2000)]
    train, held = C.split(samples, "train"), C.split(samples, "eval")
    assert set(train).isdisjoint(held) and len(train) + len(held) == 2000
    assert 0.2 < len(held) / 2000 < 0.3
    assert C.split(samples[::-1], "eval") == held  # file order does not matter
    more = C.split(samples + [f"another line {i} of text" for i in range(500)], "eval")
    assert [s for s in more if s in set(samples)] == held  # a sample keeps its part
    assert C.split(samples, "all") == sorted(train + held, key=C.split(samples, "all").index)
    with pytest.raises(ValueError, match="part"):
        C.split(samples, "test")


def test_user_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    lines = [f"My own sentence number {i} is here." for i in range(40)]
    path.write_text("\n".join(lines + ["", lines[0], "  spaced   out   words here  "]) + "\n")
    every = C.load_corpus(str(path))
    assert sorted(every) == sorted(lines + ["spaced out words here"])
    tr, ev = C.load_corpus(path, "train"), C.load_corpus(path, "eval", 3)
    assert set(tr).isdisjoint(ev) and len(ev) <= 3
    with pytest.raises(C.CorpusError, match="not found"):
        C.load_corpus(str(tmp_path / "nope.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(C.CorpusError, match="UTF-8"):
        C.load_corpus(str(tmp_path / "bin.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(C.CorpusError, match="no usable samples"):
        C.load_corpus(str(tmp_path / "empty.txt"))


def test_missing_corpus_names_the_package(monkeypatch, tmp_path):
    fake = dataclasses.replace(C.CORPORA["jargon"], files=(str(tmp_path / "jargon.txt.gz"),))
    monkeypatch.setitem(C.CORPORA, "jargon", fake)
    C._samples.cache_clear()
    assert not C.is_installed("jargon")
    with pytest.raises(C.CorpusError) as exc:
        C.load_corpus("jargon", "eval", 10)
    msg = str(exc.value)
    assert "\n" not in msg and "apt-get install -y jargon-text" in msg
    with pytest.raises(C.CorpusError, match="unknown corpus 'klingon'"):
        C.load_corpus("klingon")
    C._samples.cache_clear()


def test_generated_is_a_corpus_too():
    held = C.load_corpus("generated", "eval", 50)
    assert len(held) == 50 and set(held).isdisjoint(C.load_corpus("generated", "train"))


@pytest.mark.parametrize("name", list(C.CORPORA))
def test_installed_corpora(name):
    if not C.is_installed(name):
        pytest.skip(f"{name} not installed ({C.CORPORA[name].install_hint()})")
    every = C.load_corpus(name)
    assert len(every) > 5000
    assert len({s.casefold() for s in every}) == len(every)
    assert all(C.MIN_WORDS <= len(s.split()) <= C.MAX_WORDS for s in every)
    assert not any("``" in s or "│" in s or ":func:`" in s for s in every)  # markup gone
    assert sum("::" in s or "{" in s for s in every) < 0.005 * len(every)
    held = C.load_corpus(name, "eval", 500)
    assert len(held) == 500 and set(held).isdisjoint(C.load_corpus(name, "train"))
    C._samples.cache_clear()
    assert C.load_corpus(name, "eval", 500) == held  # read again: the same samples


def test_validation_is_disjoint_from_training_and_evaluation():
    from compactnn.zoo import texts

    val = texts.validation_texts("generated", 200)
    assert len(val) == 200 and val == texts.validation_texts("generated", 200)
    part = C.load_corpus("generated", "train")
    train = texts.training_texts(4 * len(part), corpora=("generated",))  # all it gives
    assert len(train) == len(part) - texts.VALIDATION
    assert set(val) <= set(part) and set(val).isdisjoint(train)
    assert set(val).isdisjoint(C.load_corpus("generated", "eval"))
    with pytest.raises(ValueError):
        texts.validation_texts("generated", texts.VALIDATION + 1)
