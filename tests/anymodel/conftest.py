"""Tiny random-weight Hugging Face models (BERT, GPT-2, Llama, ViT, T5) saved to a
temporary folder with ``save_pretrained``, a word-level tokenizer built here, and a
small text file; nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

WORDS = ("the a cat dog sat ran on under mat rug red blue small big quickly slowly and "
         "then it was is").split()


def _lines(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(n)]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]", eos_token="[EOS]")


def _config(kind: str):
    import transformers as tf

    v = 64
    if kind == "bert":
        return tf.BertConfig(vocab_size=v, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=64,
                             max_position_embeddings=64, pad_token_id=0), \
            tf.BertForMaskedLM
    if kind == "gpt2":
        return tf.GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                             bos_token_id=2, eos_token_id=3, pad_token_id=0), \
            tf.GPT2LMHeadModel
    if kind == "llama":
        return tf.LlamaConfig(vocab_size=v, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2,
                              intermediate_size=64, max_position_embeddings=64,
                              bos_token_id=2, eos_token_id=3, pad_token_id=0), \
            tf.LlamaForCausalLM
    if kind == "vit":
        return tf.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, image_size=16, patch_size=4,
                            num_labels=3), tf.ViTForImageClassification
    if kind == "t5":
        return tf.T5Config(vocab_size=v, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                           num_heads=4, decoder_start_token_id=0, pad_token_id=0,
                           eos_token_id=3), tf.T5ForConditionalGeneration
    raise ValueError(kind)


def make_model_dir(kind: str, path, seed: int = 0):
    """Save a tiny random ``kind`` model (and, for text models, the tokenizer) to
    ``path``; return ``(path, data file)``."""
    torch.manual_seed(seed)
    config, cls = _config(kind)
    model = cls(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    if kind == "vit":
        rng = np.random.default_rng(seed)
        data = path.parent / f"{kind}-pixels.npy"
        np.save(data, rng.standard_normal((12, 3, 16, 16)).astype(np.float32))
    else:
        _tokenizer().save_pretrained(path)
        data = path.parent / f"{kind}-text.txt"
        data.write_text("\n".join(_lines(24, seed)) + "\n")
    return path, data


KINDS = ("bert", "gpt2", "llama", "vit", "t5")


@pytest.fixture(scope="module", params=KINDS)
def model_dir(request, tmp_path_factory):
    """``(kind, folder, data file)`` of each tiny model."""
    root = tmp_path_factory.mktemp(request.param)
    path, data = make_model_dir(request.param, root / "model")
    return request.param, path, data
