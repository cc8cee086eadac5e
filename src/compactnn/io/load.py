"""``load``: a file written by ``save`` as a runnable compact model.

The description (``compactnn.io.schema``) is validated first; then the shapes the
model's adapter declares (``compactnn.io.adapters``) are compared with it before
anything is built; the model is built with its large tensors on the meta device
(``compactnn.io.meta``); every layer's geometry and every plain tensor's shape is
compared with it before any array is decoded; the tensors then come from the file.
Loading never unpickles or executes stored code: the only code that runs is the
constructor the adapter selects, and every array passes its format's ``check()``
before a kernel can read it.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from compactnn.cost import energy_pj
from compactnn.io import adapters, packed
from compactnn.io.checks import (
    archive_budget,
    check_declared,
    check_layers,
    check_modules,
    check_plain,
    check_state_names,
    err,
    matrices,
)
from compactnn.io.files import read_bytes
from compactnn.io.schema import Description
from compactnn.nn.chain import install_chains
from compactnn.nn.layers import LayerRecord
from compactnn.nn.tree import set_module

__all__ = ["load", "MAX_PARAMS", "read_description", "model_for"]

MAX_PARAMS = 2**31  # largest model (parameters + buffers) a file may ask to build


def read_description(path: str | os.PathLike) -> tuple[bytearray, dict[str, np.ndarray],
                                                       Description, dict[str, int], int]:
    """``(raw bytes, arrays, validated description, stored bytes per tensor, bytes of
    everything else)`` of a file; every checksum and the description verified."""
    source = os.fspath(path)
    raw = read_bytes(path)
    arrays, desc, nbytes, header = packed.read(raw, source)
    return raw, arrays, Description.from_json(desc, source), nbytes, header


def model_for(desc: Description, arrays: dict[str, np.ndarray], used: set[str], source: str,
              max_params: int) -> nn.Module | None:
    """The model the description's adapter entry names (None: a custom model), checked
    first against the shapes the adapter declares, then built (large tensors on meta)
    and checked layer by layer and tensor by tensor."""
    shapes = adapters.declared_shapes(desc.model, source)
    if shapes is not None:
        check_declared(desc, shapes, source, max_params, f"the model {desc.model['class']}")
    model = adapters.build_from(desc.model, arrays, used, source, max_params)
    if model is not None:
        check_layers(model, desc, source)
        check_state_names(model, desc, arrays, source)
    return model


def _materialise(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``, replacing (not copying into) its tensors, so a
    tensor built on the meta device gets the file's data; no meta tensor may remain."""
    model.load_state_dict(state, strict=True, assign=True)
    check_modules(model, source)
    for mod_name, mod in model.named_modules():
        for t_name, t in list(mod.named_parameters(recurse=False)) + list(
                mod.named_buffers(recurse=False)):
            if t is not None and t.is_meta:
                raise err(source, f"the model's tensor {mod_name}.{t_name} is not stored in "
                          "the file and too large to rebuild")


def _skeleton(model: nn.Module, desc: Description, arrays: dict[str, np.ndarray],
              used: set[str], source: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module skeleton, got {type(model).__name__}")
    model = copy.deepcopy(model)
    if desc.model.get("zoo") is not None:
        model.zoo_spec = desc.model["zoo"]
    hf = desc.model.get("hf")
    if hf is not None:
        model.hf_spec = {k: hf[k] for k in ("auto", "architecture", "config")}
        model.hf_files = adapters.attach_files(hf, arrays, used, source)
    check_layers(model, desc, source)
    check_state_names(model, desc, arrays, source)
    return model


def load(path: str | os.PathLike, model: nn.Module | None = None, *,
         factory: str | None = None, device: str | torch.device | None = None,
         max_params: int = MAX_PARAMS) -> nn.Module:
    """Load a file written by ``save`` into a runnable compact model (eval mode).

    Args:
        path: the file (a regular file; read once, its size checked first).
        model: a skeleton with the same architecture (dense, compact or structured
            layers such as ``PermutedLinear`` / ``BlockDiagLinear``), needed unless the
            file names a zoo or Hugging Face model (``compactnn.io.adapters``) or
            ``factory`` is given. It is copied, not modified.
        factory: ``"package.module:function"``, called with no arguments for the
            skeleton (the caller's choice of code; a file never names it).
        device: ``None`` or ``"cpu"``: compact layers (they run on the CPU); any other
            device (e.g. ``"cuda"``): every compact layer decoded to its dense twin
            (bit-identical float32 weights) and the whole model moved there.
        max_params: refuse to build a zoo model with more parameters than this.

    A named model's declared shapes are compared with the file before it is built; it
    is built with its large tensors on the meta device; every layer's geometry and
    every plain tensor's shape are compared with it before any array is decoded, and
    its tensors then come from the file, so a file cannot make ``load`` allocate much
    more than its own size.

    Raises:
        CompactFileError: the file is missing, not a regular file, corrupt or
            inconsistent, names an unknown format, version or model, or does not fit the
            skeleton; the message names the problem.
    """
    source = os.fspath(path)
    raw, arrays, desc, _, _ = read_description(path)
    archive_budget(desc, len(raw), source)
    used: set[str] = set()
    if model is None and factory is not None:
        model = adapters.from_factory(factory)
    if model is None:
        model = model_for(desc, arrays, used, source, max_params)
        if model is None:
            raise err(source, f"the file holds a custom model ({desc.model['class']}); "
                      "pass a skeleton: load(path, model=...) or load(path, "
                      "factory='package.module:function')")
    else:
        model = _skeleton(model, desc, arrays, used, source)
    for name, e in desc.layers.items():
        mats, archives = matrices(e, name, arrays, used, source)
        new = e.build(mats, torch.zeros(e.shape[0] * e.groups) if e.bias else None)
        new.archives = archives
        new.record = LayerRecord(
            name=name, kind=e.kind, shape=mats[0].shape, groups=len(mats),
            format=e.format, bytes=sum(M.nbytes for M in mats), storage=e.storage,
            stored_bytes=(sum(a.nbytes for a in archives) if archives
                          else sum(M.nbytes for M in mats)),
            entropy_bits=float(e.entropy_bits or 0.0),
            energy_pj=sum(energy_pj(M.cost()) for M in mats), reason=e.reason,
        )
        set_module(model, name, new)
    _materialise(model, _state(model, desc, arrays, used, source), source)
    install_chains(model)
    if device is not None and torch.device(device).type != "cpu":
        from compactnn.nn import to_dense

        return to_dense(model).to(device).eval()
    return model.eval()


def _state(model: nn.Module, desc: Description, arrays: dict[str, np.ndarray],
           used: set[str], source: str) -> dict[str, torch.Tensor]:
    """The plain tensors of the compact model, checked against it (own memory)."""
    expected = {k: (tuple(t.shape), t.dtype) for k, t in model.state_dict().items()}
    if set(desc.state) != set(expected):
        missing = sorted(set(expected) - set(desc.state))
        extra = sorted(set(desc.state) - set(expected))
        raise err(source, f"state tensors do not match the model (missing {missing[:5]}, "
                  f"unexpected {extra[:5]})")
    state: dict[str, Any] = {}
    for k in desc.state:
        if k not in arrays or k in used:
            raise err(source, f"state tensor {k!r} is missing")
        check_plain(k, arrays[k], *expected[k], source)
        used.add(k)
        state[k] = torch.from_numpy(np.array(arrays[k]))  # own memory, not the file buffer
    unused = sorted(set(arrays) - used)
    if unused:
        raise err(source, f"tensors not referenced by the description: {unused[:5]}")
    return state
