"""A Hugging Face decoder model without its weights, cut into streamable parts.

:func:`skeleton` builds the model of a folder on the meta device (tensors of at most
``io.meta.SMALL`` elements for real, so non-persistent buffers such as rotary
frequencies are computed), normalised as ``zoo.hf.read_dir`` normalises it (``Conv1D``
-> ``nn.Linear``, tied ``Linear`` weights untied) and with the same ``hf_spec`` /
``hf_files``. :class:`Parts` names its *head* (everything that runs before the first
block: embeddings, rotary tables), its *blocks* (the transformer layers) and its *tail*
(final norm, LM head), and fills any module's tensors from the shards
(``io.shards.Shards``), one tensor at a time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compactnn.io.meta import LargeOnMeta
from compactnn.io.shards import Shards, read_small
from compactnn.zoo import hf

__all__ = ["skeleton", "Parts", "ARCHITECTURES"]

#: model_type -> (path of the blocks' ModuleList, tail modules in call order)
ARCHITECTURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "llama": ("model.layers", ("model.norm", "lm_head")),
    "mistral": ("model.layers", ("model.norm", "lm_head")),
    "qwen2": ("model.layers", ("model.norm", "lm_head")),
    "gpt2": ("transformer.h", ("transformer.ln_f", "lm_head")),
}


def skeleton(folder: str | os.PathLike) -> tuple[nn.Module, set[str]]:
    """``(model, conv1d)``: the folder's causal LM with its large tensors on the meta
    device, and the names of the modules that were ``Conv1D`` (their stored weights are
    transposed)."""
    tf = hf._tf()
    root, source = Path(folder), os.fspath(folder)
    if not hf.is_hf_dir(root):
        raise hf.HFError(f"{source}: not a Hugging Face model folder (no config.json)")
    raw = read_small(os.fspath(root / "config.json"), hf.MAX_CONFIG_BYTES, "config.json")
    try:
        d = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise hf.HFError(f"{source}: config.json is not valid JSON ({exc})") from None
    config = hf._config(d, source)
    archs = d.get("architectures") or [None]
    if not isinstance(archs, list) or len(archs) != 1:
        raise hf.HFError(f"{source}: config architectures must name one class, got {archs!r}")
    auto = hf._auto_for(config.model_type, archs[0])
    if auto != "AutoModelForCausalLM" or config.model_type not in ARCHITECTURES:
        raise hf.HFError(f"{source}: streaming supports the causal LMs "
                         f"{', '.join(sorted(ARCHITECTURES))}, not {config.model_type}")
    files = {}
    for name in hf.TOKENIZER_FILES:
        f = root / name
        if f.is_file():
            files[name] = read_small(os.fspath(f), hf.MAX_FILE_BYTES, name)
    with LargeOnMeta():
        model = getattr(tf, auto).from_config(config, dtype=torch.float32)
    conv1d = {n for n, m in model.named_modules() if isinstance(m, hf._conv1d_type())}
    hf.normalise_(model)
    hf._check_supported(model, source)
    config_dict = {k: v for k, v in model.config.to_dict().items()
                   if k == "model_type" or (k not in hf._DROPPED and not k.startswith("_"))}
    model.hf_spec = {"auto": auto, "architecture": type(model).__name__,
                     "config": json.loads(json.dumps(config_dict))}
    model.hf_files = files
    return model.eval(), conv1d


class Parts:
    """The head, blocks and tail of a :func:`skeleton` model and their weights."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.model, self._conv1d = skeleton(folder)
        self.shards = Shards(folder)
        blocks, self.tail = ARCHITECTURES[self.model.config.model_type]
        self.blocks_path = blocks
        self.blocks: nn.ModuleList = self.model.get_submodule(blocks)
        ties = getattr(self.model, "_tied_weights_keys", None)
        tie = bool(getattr(self.model.config, "tie_word_embeddings", False))
        self._ties = dict(ties) if tie and isinstance(ties, dict) else {}
        sd = self.model.state_dict()
        names = set(sd)
        missing = [n for n in names if n not in self.shards and self._ties.get(n)
                   not in self.shards]
        if missing:
            raise hf.HFError(f"{folder}: weights missing from the shards: "
                             f"{', '.join(sorted(missing)[:5])}")
        for n in names:
            src = n if n in self.shards else self._ties[n]
            want = tuple(sd[n].shape)
            got = self.shards.shape(src)
            owner = n.rsplit(".", 1)[0]
            if owner in self._conv1d and n.endswith(".weight"):
                got = got[::-1]
            if got != want:
                raise hf.HFError(f"{folder}: {src} has shape {list(got)}, the config "
                                 f"needs {list(want)}")

    def head_names(self) -> list[str]:
        """Top-level state names outside the blocks and the tail."""
        inner = (self.blocks_path + ".",) + tuple(t + "." for t in self.tail)
        return [n for n in self.model.state_dict() if not n.startswith(inner)]

    def fill(self, path: str) -> nn.Module:
        """The module at ``path`` with its state read from the shards (float32)."""
        module = self.model.get_submodule(path)
        pre = path + "." if path else ""
        state = {}
        for k in module.state_dict():
            full = pre + k
            t = self.shards.get(full if full in self.shards else self._ties[full])
            if full.rsplit(".", 1)[0] in self._conv1d and full.endswith(".weight"):
                t = t.t().contiguous()
            state[k] = t
        module.load_state_dict(state, assign=True)
        return module

    def fill_head(self) -> None:
        """Read every head tensor (embeddings, ...) from the shards."""
        for n in self.head_names():
            owner, leaf = n.rsplit(".", 1) if "." in n else ("", n)
            mod = self.model.get_submodule(owner)
            t = self.shards.get(n)
            if leaf in mod._parameters:
                mod._parameters[leaf] = nn.Parameter(t, requires_grad=False)
            else:
                mod._buffers[leaf] = t

    def drop_head(self) -> None:
        """Put the head tensors back on the meta device (their memory is freed)."""
        for n in self.head_names():
            owner, leaf = n.rsplit(".", 1) if "." in n else ("", n)
            mod = self.model.get_submodule(owner)
            if leaf in mod._parameters:
                p = mod._parameters[leaf]
                mod._parameters[leaf] = nn.Parameter(torch.empty_like(p, device="meta"),
                                                     requires_grad=False)
            else:
                mod._buffers[leaf] = torch.empty_like(mod._buffers[leaf], device="meta")

    def head_state(self) -> dict[str, Any]:
        """The head's state tensors by name (after :meth:`fill_head`)."""
        sd = self.model.state_dict()
        return {n: sd[n] for n in self.head_names()}
