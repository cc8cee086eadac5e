"""The model adapters of the zoo, registered into ``compactnn.io.adapters`` when this
module is imported (``compactnn.PROVIDERS["model_adapters"]`` names it):

- ``zoo``: a zoo model by name (``compactnn.zoo.MODELS``) and keyword arguments, built
  with its large tensors on the meta device; for ``minilm`` (the sentence encoder) the
  ``state_dict`` shapes are declared from its BERT config (:func:`minilm_shapes`), so
  a file that does not fit is refused before ``transformers`` is imported;
- ``hf``: a Hugging Face model by auto class, architecture and config
  (:mod:`compactnn.zoo.hf`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from compactnn._validate import is_int
from compactnn.io import adapters
from compactnn.io.container import CompactFileError, canonical_json
from compactnn.io.meta import LargeOnMeta
from compactnn.zoo.models import MODELS, build

__all__ = ["ZOO", "HF", "SHAPES", "minilm_shapes"]

_MAX_KWARGS = 4096  # bytes of a zoo entry's keyword arguments (canonical JSON)


def _err(source: str, msg: str) -> CompactFileError:
    return CompactFileError(f"{source}: {msg}")


def _zoo_check(spec: Any, source: str) -> None:
    if (not isinstance(spec, dict) or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("kwargs"), dict)):
        raise _err(source, "bad zoo model entry")
    if spec["name"] not in MODELS:
        raise _err(source, f"unknown zoo model {spec['name']!r}; available: "
                   f"{', '.join(MODELS)}")
    if len(canonical_json(spec["kwargs"])) > _MAX_KWARGS:
        raise _err(source, "zoo model arguments are too long")


def _zoo_build(spec: Any, source: str, max_params: int) -> nn.Module:
    """The zoo model a file names, with every tensor of more than ``SMALL`` elements on
    the meta device (materialised from the file's tensors by ``load``)."""
    _zoo_check(spec, source)
    name, kwargs = spec["name"], spec["kwargs"]
    try:
        with LargeOnMeta():
            model = build(name, **kwargs)
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError,
            RecursionError) as exc:
        msg = " ".join(str(exc).split())[:300]
        raise _err(source, f"cannot build zoo model {name!r} with {kwargs}: {msg}") from None
    count = sum(t.numel() for t in model.state_dict().values())
    if count > max_params:
        raise _err(source, f"zoo model {name!r} with {kwargs} has {count} parameters, "
                   f"more than the limit {max_params}")
    model.zoo_spec = spec
    return model


def _pos_int(v: Any) -> bool:
    return is_int(v, 1, numpy=False)


_ENCODER_KWARGS = {"hf_config", "max_seq_length", "vocab_bytes", "do_lower_case",
                   "strip_accents", "tokenize_chinese_chars", "word_embedding_values",
                   "word_embedding_scaled"}


def minilm_shapes(kwargs: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
    """The ``state_dict`` shapes of ``SentenceEncoder(**kwargs)`` (a BERT encoder without
    pooler, the vocabulary buffer, optionally a ``PackedEmbedding`` word table), from
    the config alone; None where the arguments are invalid or the config asks for a
    variant this table does not describe (the model is then built to find out)."""
    from compactnn.zoo.packed_embedding import code_bits
    from compactnn.zoo.transformer import bundled_hf_config, check_kwargs

    if set(kwargs) - _ENCODER_KWARGS:
        return None
    cfg = kwargs.get("hf_config")
    cfg = bundled_hf_config() if cfg is None else cfg
    values = kwargs.get("word_embedding_values")
    scaled = kwargs.get("word_embedding_scaled", False)
    try:
        check_kwargs(cfg, kwargs.get("max_seq_length", 256), kwargs.get("vocab_bytes", 0),
                      values, scaled)
    except ValueError:
        return None
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size",
            "max_position_embeddings", "type_vocab_size")
    if (not all(_pos_int(cfg.get(k)) for k in keys)
            or cfg.get("position_embedding_type", "absolute") != "absolute"
            or cfg.get("add_cross_attention") or cfg.get("is_decoder")):
        return None
    h, inner, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    e = "bert.embeddings."
    out: dict[str, tuple[int, ...]] = {"vocab": (kwargs.get("vocab_bytes", 0),)}
    if values is None:
        out[e + "word_embeddings.weight"] = (vocab, h)
    else:
        out[e + "word_embeddings.codebook"] = (values,)
        out[e + "word_embeddings.codes"] = (vocab, -(-h // 8) * code_bits(values))
        if scaled:
            out[e + "word_embeddings.scale"] = (vocab,)
    out[e + "position_embeddings.weight"] = (cfg["max_position_embeddings"], h)
    out[e + "token_type_embeddings.weight"] = (cfg["type_vocab_size"], h)
    out[e + "LayerNorm.weight"] = out[e + "LayerNorm.bias"] = (h,)
    for i in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}."
        for lin, shape in (("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                           ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                           ("intermediate.dense", (inner, h)), ("output.dense", (h, inner))):
            out[f"{p}{lin}.weight"] = shape
            out[f"{p}{lin}.bias"] = (shape[0],)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            out[f"{p}{norm}.weight"] = out[f"{p}{norm}.bias"] = (h,)
    return out


SHAPES = {"minilm": minilm_shapes}
"""Zoo model name -> its declared ``state_dict`` shapes from the keyword arguments."""


def _zoo_shapes(spec: Any, source: str) -> dict[str, tuple[int, ...]] | None:
    fn = SHAPES.get(spec["name"])
    return fn(spec["kwargs"]) if fn is not None else None


def _hf_spec(model: nn.Module) -> Any:
    spec = getattr(model, "hf_spec", None)
    if spec is None:
        return None
    return {**spec, "files": sorted(getattr(model, "hf_files", None) or {})}


def _hf_check(spec: Any, source: str) -> None:
    from compactnn.zoo import hf

    try:
        hf.check_spec(spec, source)
    except hf.HFError as exc:
        raise CompactFileError(str(exc)) from None


def _hf_build(spec: Any, source: str, max_params: int) -> nn.Module:
    from compactnn.zoo import hf

    try:
        return hf.build(spec, source, max_params)
    except hf.HFError as exc:
        raise CompactFileError(str(exc)) from None


ZOO = adapters.register(adapters.Adapter("zoo", _zoo_check, _zoo_build, _zoo_shapes,
                                         spec=lambda m: getattr(m, "zoo_spec", None)))
HF = adapters.register(adapters.Adapter("hf", _hf_check, _hf_build, spec=_hf_spec,
                                        files=True))
