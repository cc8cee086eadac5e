"""Hugging Face ``transformers`` models of any architecture, from a local folder.

:func:`read_dir` loads a folder written by ``save_pretrained`` (``config.json``, the
``*.safetensors`` weights, tokenizer / processor files) into a model compactnn can
compress: float32, every ``transformers`` ``Conv1D`` (GPT-2's transposed linear layer)
replaced by the ``nn.Linear`` computing the same function, and every ``nn.Linear``
whose weight is tied to another module's (an LM head tied to the word embeddings)
given its own copy, so pruning or sharing it leaves the embeddings as they are.

The model carries ``hf_spec`` (``{"auto", "architecture", "config"}``: the
``transformers`` auto class, the architecture class name and the ``config.json``
dict) and ``hf_files`` (``{file name: bytes}`` of the tokenizer / processor files);
``compactnn.save`` stores both in the compact file, and ``compactnn.load(path)``
rebuilds the model with :func:`build`: ``<auto class>.from_config`` with its large
tensors on the meta device, the same normalisation, then the file's compact layers
and tensors. Only ``transformers``' own classes are built (the architecture must be
the one its auto class maps the config's ``model_type`` to; ``auto_map`` /
remote code is refused), so a file never names code that loading imports or runs.
Pickled weights (``pytorch_model.bin``) are not read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compactnn.errors import UserError
from compactnn.nn.tree import set_module

__all__ = ["AUTO_CLASSES", "TOKENIZER_FILES", "HFError", "is_hf_dir", "read_dir",
           "check_spec", "build", "normalise_", "task_of", "is_classifier", "CLASSIFIERS",
           "tokenizer", "MAX_CONFIG_BYTES", "MAX_FILE_BYTES"]

# auto class -> name of its mapping in transformers.models.auto.modeling_auto, most
# specific first (an architecture is looked up in this order)
AUTO_CLASSES: dict[str, str] = {
    "AutoModelForCausalLM": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "AutoModelForSeq2SeqLM": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "AutoModelForMaskedLM": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "AutoModelForSequenceClassification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForTokenClassification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForImageClassification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "AutoModel": "MODEL_MAPPING_NAMES",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                   "preprocessor_config.json", "processor_config.json",
                   "generation_config.json")
MAX_CONFIG_BYTES = 1 << 16  # canonical JSON of a config a file may hold
MAX_FILE_BYTES = 1 << 26  # one tokenizer / processor file
# config keys not kept: transformers' bookkeeping and run-time choices (private keys,
# starting with "_", such as the source path _name_or_path, are dropped too)
_DROPPED = ("model_type", "transformers_version", "dtype", "torch_dtype",
            "attn_implementation")


class HFError(UserError):
    """A Hugging Face folder or spec that compactnn cannot use; the message says why."""


def _tf():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:  # pragma: no cover - depends on the environment
        raise HFError("Hugging Face models need the 'transformers' library: "
                      "pip install transformers") from None
    return transformers


def is_hf_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a ``config.json``."""
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def _names(values: Any) -> tuple[str, ...]:
    return tuple(values) if isinstance(values, (tuple, list)) else (values,)


def _auto_for(model_type: str, architecture: str | None) -> str:
    """The auto class whose mapping sends ``model_type`` to ``architecture``."""
    from transformers.models.auto import modeling_auto

    supported = []
    for auto, mapping in AUTO_CLASSES.items():
        names = _names(getattr(modeling_auto, mapping).get(model_type, ()))
        supported += names
        if architecture is None and auto == "AutoModel" and names:
            return auto
        if architecture is not None and architecture in names:
            return auto
    if not supported:
        raise HFError(f"model type {model_type!r} has no built-in transformers class "
                      "(remote code is not supported)")
    raise HFError(f"architecture {architecture!r} is not a built-in transformers class for "
                  f"model type {model_type!r}; supported: {', '.join(sorted(set(supported)))}")


def _config(d: Any, source: str):
    """A transformers config object from a ``config.json`` dict (built-in types only)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not isinstance(d, dict):
        raise HFError(f"{source}: config is not a JSON object")
    if "auto_map" in d:
        raise HFError(f"{source}: the config asks for remote code (auto_map); only built-in "
                      "transformers architectures are supported")
    if "quantization_config" in d:
        raise HFError(f"{source}: quantized models are not supported (float weights only)")
    model_type = d.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise HFError(f"{source}: unknown model_type {model_type!r}; supported: the "
                      "transformers built-in model types")
    kwargs = {k: v for k, v in d.items() if k not in _DROPPED and not k.startswith("_")}
    try:
        return CONFIG_MAPPING[model_type](**kwargs)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise HFError(f"{source}: invalid {model_type} config ({msg})") from None


def check_spec(spec: Any, source: str) -> None:
    """Raise ``HFError`` unless ``spec`` is a well-formed, bounded ``hf_spec`` naming a
    built-in architecture (nothing is built)."""
    from compactnn.io.container import canonical_json

    if (not isinstance(spec, dict) or set(spec) != {"auto", "architecture", "config", "files"}
            or spec["auto"] not in AUTO_CLASSES or not isinstance(spec["architecture"], str)
            or not isinstance(spec["config"], dict) or not isinstance(spec["files"], list)):
        raise HFError(f"{source}: bad Hugging Face model entry")
    bad = sorted(k for k in spec["config"] if k.startswith("_") or k in _DROPPED[1:])
    if bad:
        raise HFError(f"{source}: the model config holds keys save never writes: {bad[:5]}")
    if len(canonical_json(spec["config"])) > MAX_CONFIG_BYTES:
        raise HFError(f"{source}: the model config is longer than {MAX_CONFIG_BYTES} bytes")
    files = spec["files"]
    if (len(files) > len(TOKENIZER_FILES) or files != sorted(set(files))
            or not all(isinstance(f, str) and f in TOKENIZER_FILES for f in files)):
        raise HFError(f"{source}: bad tokenizer file list {files!r}"[:300])
    config = _config(spec["config"], source)
    if _auto_for(config.model_type, spec["architecture"]) != spec["auto"]:
        raise HFError(f"{source}: architecture {spec['architecture']!r} does not belong to "
                      f"{spec['auto']}")


def _conv1d_type():
    from transformers.pytorch_utils import Conv1D

    return Conv1D


def normalise_(model: nn.Module) -> nn.Module:
    """In place: every ``transformers`` ``Conv1D`` becomes the equivalent ``nn.Linear``
    (weight transposed), and every ``nn.Linear`` whose weight is also another module's
    parameter gets its own copy. Meta tensors stay meta. Returns ``model``."""
    conv1d = _conv1d_type()
    for name, m in list(model.named_modules()):
        if isinstance(m, conv1d):
            lin = nn.Linear(m.nx, m.nf, device="meta")
            lin.train(m.training)
            lin.weight = nn.Parameter(m.weight.detach().t().contiguous())
            lin.bias = nn.Parameter(m.bias.detach().clone())
            set_module(model, name, lin)
    owners: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    for m in model.modules():
        if isinstance(m, nn.Linear) and owners.get(id(m.weight), 0) > 1:
            m.weight = nn.Parameter(m.weight.detach().clone())
    return model


def _own_memory_(model: nn.Module) -> nn.Module:
    """In place: every parameter and buffer that is a view of memory torch did not
    allocate (``from_pretrained`` hands out views of the memory-mapped weights file,
    which stays mapped, its pages resident, while one of them lives) gets a copy in its
    own memory, one tensor at a time; the same ``Parameter`` objects (ties kept).
    Returns ``model``."""
    def mapped(t: torch.Tensor) -> bool:
        return not t.is_meta and not t.untyped_storage().resizable()

    done: set[int] = set()
    copies: dict[int, torch.Tensor] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            if id(p) not in done and mapped(p):
                p.data = p.data.clone()
            done.add(id(p))
        for name, b in list(m.named_buffers(recurse=False)):
            if b is not None and (id(b) in copies or mapped(b)):
                if id(b) not in copies:
                    copies[id(b)] = b.clone()
                m._buffers[name] = copies[id(b)]
    return model


def _check_supported(model: nn.Module, source: str) -> None:
    """Every module holding weights is one compactnn compresses (``nn.Linear``,
    ``nn.Conv2d``) or keeps as plain tensors; ``Conv1D`` must be gone."""
    conv1d = _conv1d_type()
    for name, m in model.named_modules():
        if isinstance(m, conv1d):
            raise HFError(f"{source}: module {name!r} is a Conv1D that was not converted")
        for pname, p in m.named_parameters(recurse=False):
            if p.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
                raise HFError(f"{source}: module {name!r} ({type(m).__name__}) holds "
                              f"{pname} as {p.dtype}; supported: float parameters "
                              "(quantized checkpoints are not)")


def build(spec: dict[str, Any], source: str, max_params: int) -> nn.Module:
    """The model a checked ``spec`` describes, with every tensor of more than 4096
    elements on the meta device (``compactnn.load`` fills them from the file)."""
    from compactnn.io.meta import LargeOnMeta as _LargeOnMeta

    tf = _tf()
    check_spec(spec, source)
    config = _config(spec["config"], source)
    try:
        with _LargeOnMeta():
            model = getattr(tf, spec["auto"]).from_config(config, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError, KeyError,
            AttributeError, RecursionError) as exc:
        msg = " ".join(str(exc).split())[:300]
        raise HFError(f"{source}: cannot build {spec['architecture']} from its config: "
                      f"{msg}") from None
    if type(model).__name__ != spec["architecture"]:
        raise HFError(f"{source}: the config builds {type(model).__name__}, the file says "
                      f"{spec['architecture']}")
    count = sum(t.numel() for t in model.state_dict().values())
    if count > max_params:
        raise HFError(f"{source}: {spec['architecture']} has {count} parameters, more than "
                      f"the limit {max_params}")
    normalise_(model)
    model.hf_spec = {k: spec[k] for k in ("auto", "architecture", "config")}
    return model.eval()


def read_dir(path: str | os.PathLike) -> nn.Module:
    """The float32 model of a local Hugging Face folder (``config.json`` + ``*.safetensors``
    weights), normalised (:func:`normalise_`), with ``hf_spec`` and ``hf_files`` set.

    Raises:
        HFError: no config, no safetensors weights, remote code, an architecture with
            no built-in class, non-float weights or weights that do not fit the config;
            checked before anything heavy runs.
    """
    tf = _tf()
    root = Path(path)
    source = os.fspath(path)
    if not is_hf_dir(root):
        raise HFError(f"{source}: not a Hugging Face model folder (no config.json)")
    cfg_bytes = (root / "config.json").read_bytes()
    if len(cfg_bytes) > MAX_CONFIG_BYTES:
        raise HFError(f"{source}: config.json is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        d = json.loads(cfg_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HFError(f"{source}: config.json is not valid JSON ({exc})") from None
    config = _config(d, source)
    archs = d.get("architectures") or [None]
    if not isinstance(archs, list) or len(archs) != 1:
        raise HFError(f"{source}: config architectures must name one class, got {archs!r}")
    auto = _auto_for(config.model_type, archs[0])
    if not any(root.glob("*.safetensors")):
        raise HFError(f"{source}: no *.safetensors weights (pickled .bin weights are not read)")
    files = {}
    for name in TOKENIZER_FILES:
        f = root / name
        if f.is_file():
            if f.stat().st_size > MAX_FILE_BYTES:
                raise HFError(f"{source}: {name} is larger than {MAX_FILE_BYTES} bytes")
            files[name] = f.read_bytes()
    bars = tf.utils.logging.is_progress_bar_enabled()
    tf.utils.logging.disable_progress_bar()
    try:
        model = getattr(tf, auto).from_pretrained(
            source, dtype=torch.float32, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:300]
        raise HFError(f"{source}: cannot load the weights ({msg})") from None
    finally:
        if bars:
            tf.utils.logging.enable_progress_bar()
    model = _own_memory_(normalise_(model.float()))
    _check_supported(model, source)
    config_dict = {k: v for k, v in model.config.to_dict().items()
                   if k == "model_type" or (k not in _DROPPED and not k.startswith("_"))}
    model.hf_spec = {"auto": auto, "architecture": type(model).__name__,
                     "config": json.loads(json.dumps(config_dict))}
    model.hf_files = files
    return model.eval()


def task_of(model: nn.Module) -> str:
    """``"causal-lm"``, ``"seq2seq"``, ``"image"`` or ``"text"`` (any other text model)
    for a model with ``hf_spec``."""
    auto = model.hf_spec["auto"]
    if auto == "AutoModelForCausalLM":
        return "causal-lm"
    if auto == "AutoModelForSeq2SeqLM":
        return "seq2seq"
    return "image" if getattr(model, "main_input_name", "") == "pixel_values" else "text"


CLASSIFIERS = ("AutoModelForSequenceClassification", "AutoModelForImageClassification")


def is_classifier(model: nn.Module) -> bool:
    """A sequence or image classification model (one label per sample: accuracy is
    its metric when the data carries labels)."""
    return model.hf_spec["auto"] in CLASSIFIERS


def tokenizer(model: nn.Module):
    """The tokenizer built from the model's ``hf_files`` (a padding token set to the
    end-of-sequence token when it has none)."""
    import tempfile

    tf = _tf()
    files = getattr(model, "hf_files", None) or {}
    if "tokenizer.json" not in files and "vocab.txt" not in files and \
            "tokenizer.model" not in files and "spiece.model" not in files:
        raise HFError("the model has no tokenizer files (tokenizer.json, vocab.txt, ...)")
    with tempfile.TemporaryDirectory() as d:
        for name, data in files.items():
            (Path(d) / name).write_bytes(data)
        try:
            tok = tf.AutoTokenizer.from_pretrained(d, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            msg = " ".join(str(exc).split())[:200]
            raise HFError(f"cannot build the tokenizer from the model's files ({msg})") from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise HFError("the tokenizer has neither a padding nor an end-of-sequence token")
        tok.pad_token = tok.eos_token
    return tok
