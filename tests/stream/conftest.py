"""Tiny random Llama / GPT-2 folders saved as several safetensors shards."""

from __future__ import annotations

import pytest
import torch


def make_sharded(kind: str, path, layers: int = 3, hidden: int = 32, inter: int = 64,
                 vocab: int = 64, shard: str = "20KB", seed: int = 0):
    """Save a random ``kind`` causal LM to ``path`` in shards of at most ``shard``."""
    import transformers as tf

    torch.manual_seed(seed)
    if kind == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
            num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64, bos_token_id=2, eos_token_id=3, pad_token_id=0))
    else:
        model = tf.GPT2LMHeadModel(tf.GPT2Config(
            vocab_size=vocab, n_embd=hidden, n_inner=inter, n_layer=layers, n_head=4,
            n_positions=64, bos_token_id=2, eos_token_id=3, pad_token_id=0))
    model.save_pretrained(path, max_shard_size=shard)
    return path


def inputs(n: int = 40, length: int = 12, vocab: int = 64, seed: int = 0) -> torch.Tensor:
    """``(n, 2, length)`` random token ids and all-ones attention masks."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, length), generator=g)
    return torch.stack([ids, torch.ones_like(ids)], 1)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def folder(request, tmp_path_factory):
    pytest.importorskip("transformers")
    return make_sharded(request.param, tmp_path_factory.mktemp(request.param) / "m")
