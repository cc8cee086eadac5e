"""Random-weight Llama folders written straight to safetensors shards, one tensor at a
time (the model is never built, so a 3 B-parameter folder needs about one shard of
memory): ``config.json``, ``model-0000i-of-0000n.safetensors`` and the index.

Shapes (``SHAPES``) follow public configurations: ``100m`` a 12-block 768-wide Llama,
``1b`` TinyLlama-1.1B, ``3b`` OpenLLaMA-3B; weights are N(0, 0.02) from a seeded
generator, norms are ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

__all__ = ["SHAPES", "tensor_shapes", "write_llama", "params"]

#: name -> (hidden, intermediate, blocks, heads, key/value heads, vocabulary)
SHAPES: dict[str, tuple[int, int, int, int, int, int]] = {
    "100m": (768, 2048, 12, 12, 4, 32000),
    "1b": (2048, 5632, 22, 32, 4, 32000),
    "3b": (3200, 8640, 26, 32, 32, 32000),
}


def tensor_shapes(hidden: int, inter: int, layers: int, heads: int, kv: int,
                  vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor of a ``LlamaForCausalLM`` (untied head), in file order."""
    kvw = hidden // heads * kv
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (hidden,)),
                (p + "self_attn.q_proj.weight", (hidden, hidden)),
                (p + "self_attn.k_proj.weight", (kvw, hidden)),
                (p + "self_attn.v_proj.weight", (kvw, hidden)),
                (p + "self_attn.o_proj.weight", (hidden, hidden)),
                (p + "post_attention_layernorm.weight", (hidden,)),
                (p + "mlp.gate_proj.weight", (inter, hidden)),
                (p + "mlp.up_proj.weight", (inter, hidden)),
                (p + "mlp.down_proj.weight", (hidden, inter))]
    return out + [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]


def _dims(shape: str, layers: int | None) -> tuple[int, int, int, int, int, int]:
    hidden, inter, blocks, heads, kv, vocab = SHAPES[shape]
    return hidden, inter, blocks if layers is None else layers, heads, kv, vocab


def params(shape: str, layers: int | None = None) -> int:
    """Parameters of one of ``SHAPES`` (with only its first ``layers`` blocks)."""
    total = 0
    for _, s in tensor_shapes(*_dims(shape, layers)):
        n = 1
        for d in s:
            n *= d
        total += n
    return total


def write_llama(folder: str | os.PathLike, shape: str, shard_bytes: int = 1 << 30,
                seed: int = 0, layers: int | None = None) -> Path:
    """Write the random Llama ``shape`` (a key of ``SHAPES``; only its first ``layers``
    blocks if given) to ``folder``."""
    from safetensors.torch import save_file

    hidden, inter, layers, heads, kv, vocab = _dims(shape, layers)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
              "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "hidden_act": "silu",
              "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
              "torch_dtype": "float32"}
    (root / "config.json").write_text(json.dumps(config, indent=1))
    g = torch.Generator().manual_seed(seed)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, s in tensor_shapes(hidden, inter, layers, heads, kv, vocab):
        n = 4
        for d in s:
            n *= d
        if groups[-1] and size + n > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, s))
        size += n
    weight_map = {}
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {name: (torch.ones(s) if len(s) == 1 else
                          torch.empty(s).normal_(0.0, 0.02, generator=g)) for name, s in group}
        save_file(tensors, str(root / file), metadata={"format": "pt"})
        del tensors
        weight_map.update(dict.fromkeys((n for n, _ in group), file))
    (root / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 4 * params(shape, layers)}, "weight_map": weight_map}))
    return root
