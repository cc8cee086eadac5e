"""``save`` / ``load`` / ``inspect``: compact models as one safe file.

The description stored in the container (``compactnn.io.container``) says how to
rebuild the model: a zoo model by name and keyword arguments, or any other model by a
skeleton the caller passes (``load(path, model=skeleton)``); then, per compact layer,
its kind and geometry, runtime format id and version, the format's JSON attributes,
and whether its arrays are stored as they are (``raw``) or as an archive stream
decoded at load; finally the names of the plain tensors (biases, normalisation
statistics, uncompressed layers). Loading never unpickles or executes stored code:
the only code that runs is the zoo constructor the name selects, and every array
passes its format's ``check()`` before a kernel can read it.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from compactnn import formats
from compactnn._validate import is_int, is_number
from compactnn.coding import archive
from compactnn.cost import energy_pj
from compactnn.formats import FormatError
from compactnn.io import adapters, packed
from compactnn.io.container import (
    CompactFileError,
    canonical_json,
    check_tree,
    encode_file,
    read_bytes,
    write_atomic,
)
from compactnn.nn.layers import CompactConv2d, CompactLinear, LayerRecord
from compactnn.nn.structured import geometry_shell
from compactnn.nn.tree import set_module

__all__ = ["save", "load", "inspect", "FileInfo", "LayerInfo", "CompactFileError",
           "MAX_PARAMS", "VERSION"]

VERSION = 1
MAX_PARAMS = 2**31  # largest model (parameters + buffers) a file may ask to build
MAX_DIM = 2**31 - 1  # largest matrix side (column indices fit in uint32)
MAX_ENTRIES = 2**40  # largest matrix (rows x columns) a layer may declare
ARCHIVE_FLOOR = 2**24  # entries any file may decode from archives ...
ARCHIVE_EXPANSION = 16  # ... or this many per byte of the file, if more
_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_KINDS = ("linear", "conv2d")


# ---- saving ---------------------------------------------------------------------------


def _prefix(name: str, groups: int, g: int) -> str:
    return f"{name}.weight" if groups == 1 else f"{name}.weight.{g}"


def _conv_geometry(m: nn.Module) -> dict[str, Any]:
    return {"in": m.in_channels, "out": m.out_channels, "kernel": list(m.kernel_size),
            "stride": list(m.stride), "dilation": list(m.dilation), "groups": m.groups,
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding)}


def _zoo_spec(model: nn.Module, zoo: Any) -> dict[str, Any] | None:
    spec = zoo if zoo is not None else getattr(model, "zoo_spec", None)
    if spec is None:
        return None
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        spec = {"name": spec[0], "kwargs": spec[1]}
    if (not isinstance(spec, dict) or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("kwargs", {}), dict)):
        raise TypeError("zoo must be (name, kwargs) or {'name': ..., 'kwargs': {...}}")
    kwargs = spec.get("kwargs", {})
    canonical_json(kwargs)  # must be JSON
    return {"name": spec["name"], "kwargs": kwargs}


def save(model: nn.Module, path: str | os.PathLike, *, zoo: Any = None,
         metadata: dict[str, Any] | None = None, pack: bool = False) -> int:
    """Write a compact model (from ``to_compact`` or ``load``) to one file; returns its size.

    Args:
        model: the model; its ``CompactLinear``/``CompactConv2d`` layers are stored in
            their formats (raw arrays or archive stream, as recorded by ``to_compact``),
            every other tensor of its ``state_dict`` as a plain tensor.
        path: destination; written atomically (temporary file + rename).
        zoo: ``(name, kwargs)`` of the zoo model it was built from, so ``load`` can
            rebuild it without a skeleton (default: ``model.zoo_spec`` if set).
        metadata: JSON-serialisable extra information (dataset, metrics, recipe).
        pack: write the packed layout (``compactnn.io.packed``: compressed description,
            entropy-coded float tensors; smallest, but other safetensors readers see
            one opaque tensor) instead of one safetensors tensor per array.

    The same model and arguments always give the same bytes.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    tensors: dict[str, np.ndarray] = {}
    layers: dict[str, Any] = {}
    for name, m in model.named_modules():
        if not isinstance(m, (CompactLinear, CompactConv2d)):
            continue
        groups = len(m.matrices)
        rec = m.record
        entry: dict[str, Any] = {
            "kind": "linear" if isinstance(m, CompactLinear) else "conv2d",
            "format": m.format_id, "version": type(m.matrices[0]).version,
            "shape": list(m.matrices[0].shape), "groups": groups,
            "bias": m.bias is not None, "bytes": m.nbytes,
            "entropy_bits": round(float(rec.entropy_bits), 1) if rec else None,
            "reason": rec.reason if rec else "loaded",
            "storage": "archive" if m.archives else "raw",
        }
        if isinstance(m, CompactConv2d):
            entry["conv"] = _conv_geometry(m)
        if m.archives:
            for g, a in enumerate(m.archives):
                tensors[f"{_prefix(name, groups, g)}.archive"] = a.buffer
        else:
            attrs = []
            for g, M in enumerate(m.matrices):
                bufs, at = M.to_buffers()
                attrs.append({k: v for k, v in at.items() if k not in ("format", "version",
                                                                      "shape")})
                for a, arr in bufs.items():
                    tensors[f"{_prefix(name, groups, g)}.{a}"] = arr
            entry["attrs"] = attrs
        layers[name] = entry
    state = {}
    for k, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state entry {k!r} is not a tensor")
        if t.dtype == torch.bfloat16:
            raise TypeError(f"state entry {k!r}: bfloat16 tensors cannot be stored")
        state[k] = t.detach().cpu().contiguous().numpy()
    files = adapters.file_tensors(model)
    clash = (set(state) | set(files)) & set(tensors)
    if clash:
        raise ValueError(f"tensor names used twice: {sorted(clash)}")
    tensors.update(state)
    tensors.update(files)
    entry = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
             "zoo": _zoo_spec(model, zoo), **adapters.spec_entries(model)}
    desc = {
        "compactnn": VERSION,
        "model": entry,
        "layers": layers,
        "state": sorted(state),
        "metadata": metadata or {},
    }
    try:
        canonical_json(desc)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
    # refuse exactly what load() refuses, with the same messages
    source = os.fspath(path)
    check_tree(desc, f"{source}: description")
    _validate_description(desc, source)
    for k in desc["state"]:
        _check_state_tensor(k, state[k], source)
    _check_modules(model, source)
    data = packed.encode(tensors, desc) if pack else encode_file(tensors, desc)
    write_atomic(path, data)
    return len(data)


# ---- loading --------------------------------------------------------------------------


def _err(source: str, msg: str) -> CompactFileError:
    return CompactFileError(f"{source}: {msg}")


def _is_int(v: Any, lo: int = 0) -> bool:
    return is_int(v, lo, numpy=False)


def _int_list(v: Any, n: int, lo: int = 0) -> bool:
    return isinstance(v, list) and len(v) == n and all(_is_int(i, lo) for i in v)


def _validate_description(desc: dict[str, Any], source: str) -> None:
    if desc.get("compactnn") != VERSION:
        raise _err(source, f"unsupported container version {desc.get('compactnn')!r}")
    model, layers, state = desc.get("model"), desc.get("layers"), desc.get("state")
    if not isinstance(model, dict) or not isinstance(model.get("class"), str):
        raise _err(source, "description has no model entry")
    adapters.check_entries(model, source)
    if not isinstance(layers, dict) or not isinstance(state, list):
        raise _err(source, "description has no layer table or state list")
    if not isinstance(desc.get("metadata"), dict):
        raise _err(source, "description metadata is not an object")
    for name, e in layers.items():
        where = f"layer {name!r}"
        if not _NAME.match(name):
            raise _err(source, f"{where}: invalid layer name")
        if not isinstance(e, dict) or e.get("kind") not in _KINDS:
            raise _err(source, f"{where}: unknown layer kind")
        if not isinstance(e.get("format"), str) or not _is_int(e.get("version"), 1):
            raise _err(source, f"{where}: bad format id or version")
        if not _int_list(e.get("shape"), 2) or not _is_int(e.get("groups"), 1):
            raise _err(source, f"{where}: bad shape or groups")
        m_rows, n_cols = e["shape"]
        if (max(m_rows, n_cols) > MAX_DIM or e["groups"] > MAX_DIM
                or m_rows * n_cols * e["groups"] > MAX_ENTRIES):
            raise _err(source, f"{where}: shape {e['shape']} x {e['groups']} group(s) is too "
                       f"large (at most {MAX_DIM} per side, {MAX_ENTRIES} entries)")
        if not isinstance(e.get("bias"), bool) or e.get("storage") not in ("raw", "archive"):
            raise _err(source, f"{where}: bad bias flag or storage")
        ent = e.get("entropy_bits", "missing")
        if (not _is_int(e.get("bytes")) or not isinstance(e.get("reason"), str)
                or not (ent is None or (isinstance(ent, (int, float)) and is_number(ent)
                                        and ent >= 0))):
            raise _err(source, f"{where}: bad bytes, reason or entropy_bits")
        if e["storage"] == "raw" and (
                not isinstance(e.get("attrs"), list) or len(e["attrs"]) != e["groups"]
                or not all(isinstance(a, dict) for a in e["attrs"])):
            raise _err(source, f"{where}: needs one attrs object per group")
        if e["kind"] == "conv2d":
            c = e.get("conv")
            pad = c.get("padding") if isinstance(c, dict) else None
            if (not isinstance(c, dict) or not _is_int(c.get("in"), 1)
                    or not _is_int(c.get("out"), 1) or not _int_list(c.get("kernel"), 2, 1)
                    or not _int_list(c.get("stride"), 2, 1)
                    or not _int_list(c.get("dilation"), 2, 1) or c.get("groups") != e["groups"]
                    or not (pad in ("same", "valid") or _int_list(pad, 2))
                    or max(c["in"], c["out"], *c["kernel"], *c["stride"], *c["dilation"],
                           *(pad if isinstance(pad, list) else [0])) > MAX_DIM):
                raise _err(source, f"{where}: bad convolution geometry")
    if not all(isinstance(s, str) for s in state):
        raise _err(source, "state list holds a non-string name")


_SIZED_FACTORIES = (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full)
_SMALL = 4096  # elements: tensors up to this size are built for real


class _LargeOnMeta(TorchFunctionMode):
    """While active, factory calls for tensors of more than ``_SMALL`` elements (with no
    explicit device) create meta tensors: a zoo model is built without its weights,
    which the file then supplies (or compact layers replace)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _SIZED_FACTORIES and kwargs.get("device") is None:
            if "size" in kwargs:
                size = kwargs["size"]
            elif args and not isinstance(args[0], int):
                size = args[0]
            else:
                size = args if func is not torch.full else args[:1]
            try:
                count = 1
                for d in size:
                    count *= int(d)
            except (TypeError, ValueError):
                count = 0
            if count > _SMALL:
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _check_zoo_spec(spec: Any, source: str) -> None:
    from compactnn import zoo

    if (not isinstance(spec, dict) or not isinstance(spec.get("name"), str)
            or not isinstance(spec.get("kwargs"), dict)):
        raise _err(source, "bad zoo model entry")
    if spec["name"] not in zoo.MODELS:
        raise _err(source, f"unknown zoo model {spec['name']!r}; available: "
                   f"{', '.join(zoo.MODELS)}")
    if len(canonical_json(spec["kwargs"])) > 4096:
        raise _err(source, "zoo model arguments are too long")


def _zoo_model(spec: Any, source: str, max_params: int) -> nn.Module:
    """The zoo model a file names, with every tensor of more than ``_SMALL`` elements on
    the meta device (materialised from the file's tensors by ``load``)."""
    from compactnn import zoo

    _check_zoo_spec(spec, source)
    name, kwargs = spec["name"], spec["kwargs"]
    try:
        with _LargeOnMeta():
            model = zoo.build(name, **kwargs)
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError,
            RecursionError) as exc:
        msg = " ".join(str(exc).split())[:300]
        raise _err(source, f"cannot build zoo model {name!r} with {kwargs}: {msg}") from None
    count = sum(t.numel() for t in model.state_dict().values())
    if count > max_params:
        raise _err(source, f"zoo model {name!r} with {kwargs} has {count} parameters, "
                   f"more than the limit {max_params}")
    return model


def _check_geometry(m: nn.Module, e: dict[str, Any], name: str, source: str) -> None:
    where = f"layer {name!r}"
    m = geometry_shell(m)  # a structured layer of the skeleton: its plain twin's geometry
    m_rows, n_cols = e["shape"]
    if e["kind"] == "linear":
        if not isinstance(m, (nn.Linear, CompactLinear)):
            raise _err(source, f"{where}: the model has a {type(m).__name__} there, not Linear")
        if (m.out_features, m.in_features) != (m_rows, n_cols) or e["groups"] != 1:
            raise _err(source, f"{where}: file has shape {e['shape']}, the model "
                       f"({m.out_features}, {m.in_features})")
    else:
        if not isinstance(m, (nn.Conv2d, CompactConv2d)):
            raise _err(source, f"{where}: the model has a {type(m).__name__} there, not Conv2d")
        geo = _conv_geometry(m)
        if geo != e["conv"]:
            raise _err(source, f"{where}: file has convolution {e['conv']}, the model {geo}")
        kh, kw = geo["kernel"]
        want = [geo["out"] // geo["groups"], geo["in"] // geo["groups"] * kh * kw]
        if e["shape"] != want:
            raise _err(source, f"{where}: file has shape {e['shape']}, the model {want}")
    has_bias = getattr(m, "bias", None) is not None
    if has_bias != e["bias"]:
        raise _err(source, f"{where}: bias {'present' if e['bias'] else 'absent'} in the file "
                   f"but not in the model")


def _matrices(e: dict[str, Any], name: str, arrays: dict[str, np.ndarray], used: set[str],
              source: str) -> tuple[list[formats.CompactMatrix], list[archive.Archive] | None]:
    where = f"layer {name!r}"
    try:
        F = formats.get(e["format"])
    except KeyError:
        raise _err(source, f"{where}: unknown format {e['format']!r} (available: "
                   f"{', '.join(formats.available())})") from None
    if e["version"] != F.version:
        raise _err(source, f"{where}: format {e['format']!r} version {e['version']} is not "
                   f"supported (this library reads version {F.version})")
    mats, archives = [], None
    groups = e["groups"]
    shape = tuple(e["shape"])
    try:
        if e["storage"] == "archive":
            archives = []
            for g in range(groups):
                key = f"{_prefix(name, groups, g)}.archive"
                if key not in arrays:
                    raise _err(source, f"{where}: missing tensor {key!r}")
                used.add(key)
                W = archive.decode(arrays[key], shape)
                M = F.from_dense(W)
                M.check()
                mats.append(M)
                archives.append(archive.Archive(arrays[key]))
        else:
            for g, attrs in enumerate(e["attrs"]):
                prefix = _prefix(name, groups, g) + "."
                bufs = {k[len(prefix):]: v for k, v in arrays.items()
                        if k.startswith(prefix) and "." not in k[len(prefix):]}
                used.update(prefix + k for k in bufs)
                at = {**attrs, "format": e["format"], "version": e["version"],
                      "shape": list(shape)}
                mats.append(F.from_buffers(bufs, at))
    except CompactFileError:
        raise
    except (FormatError, archive.ArchiveError) as exc:
        raise _err(source, f"{where}: {exc}") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise _err(source, f"{where}: invalid arrays ({type(exc).__name__}: {exc})") from None
    return mats, archives


def _torch_dtype(a: np.ndarray) -> torch.dtype:
    return torch.from_numpy(np.empty(0, a.dtype)).dtype


def _check_state_tensor(k: str, a: np.ndarray, source: str) -> None:
    """What ``save`` and ``load`` both refuse in a plain tensor."""
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise _err(source, f"state tensor {k!r} has NaN or Inf")


def _archive_budget(desc: dict[str, Any], file_bytes: int, source: str) -> None:
    """Archives decode into dense matrices first: their total size is bounded by the
    file's size (``ARCHIVE_EXPANSION`` entries per byte, at least ``ARCHIVE_FLOOR``)."""
    total = sum(e["groups"] * e["shape"][0] * e["shape"][1] for e in desc["layers"].values()
                if e["storage"] == "archive")
    limit = max(ARCHIVE_FLOOR, ARCHIVE_EXPANSION * file_bytes)
    if total > limit:
        raise _err(source, f"archives would decode to {total} entries, more than this "
                   f"{file_bytes}-byte file may ({limit})")


def _check_modules(model: nn.Module, source: str) -> None:
    """Layer kinds stored as plain tensors that validate them (a ``check_state()``
    method, e.g. ``PackedEmbedding``): run before any forward pass can use them."""
    for name, mod in model.named_modules():
        check = getattr(mod, "check_state", None)
        if callable(check) and not any(t.is_meta for t in mod.buffers(recurse=False)):
            try:
                check()
            except ValueError as exc:
                raise _err(source, f"module {name!r}: {exc}") from None


def _materialise(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``, replacing (not copying into) its tensors, so a
    tensor built on the meta device gets the file's data; no meta tensor may remain."""
    model.load_state_dict(state, strict=True, assign=True)
    _check_modules(model, source)
    for mod_name, mod in model.named_modules():
        for t_name, t in list(mod.named_parameters(recurse=False)) + list(
                mod.named_buffers(recurse=False)):
            if t is not None and t.is_meta:
                raise _err(source, f"the model's tensor {mod_name}.{t_name} is not stored in "
                           "the file and too large to rebuild")


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

    A zoo model is built with its large tensors on the meta device; every layer's
    geometry and every plain tensor's shape are compared with it before any array is
    decoded, and its tensors then come from the file, so a file cannot make ``load``
    allocate much more than its own size.

    Raises:
        CompactFileError: the file is missing, not a regular file, corrupt or
            inconsistent, names an unknown format, version or model, or does not fit the
            skeleton; the message names the problem.
    """
    source = os.fspath(path)
    raw = read_bytes(path)
    arrays, desc, _, _ = packed.read(raw, source)
    _validate_description(desc, source)
    _archive_budget(desc, len(raw), source)
    used: set[str] = set()
    if model is None and factory is not None:
        model = adapters.from_factory(factory)
    if model is None:
        model = adapters.build_from(desc["model"], arrays, used, source, max_params)
        if model is None:
            raise _err(source, f"the file holds a custom model ({desc['model']['class']}); "
                       "pass a skeleton: load(path, model=...) or load(path, "
                       "factory='package.module:function')")
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module skeleton, got {type(model).__name__}")
    else:
        model = copy.deepcopy(model)
        if desc["model"].get("zoo") is not None:
            model.zoo_spec = desc["model"]["zoo"]
        hf = desc["model"].get("hf")
        if hf is not None:
            model.hf_spec = {k: hf[k] for k in ("auto", "architecture", "config")}
            model.hf_files = adapters.attach_files(hf, arrays, used, source)
    targets = {}
    for name, e in desc["layers"].items():
        try:
            targets[name] = model.get_submodule(name)
        except AttributeError:
            raise _err(source, f"layer {name!r} does not exist in the model") from None
        _check_geometry(targets[name], e, name, source)
    _check_state_names(model, desc, arrays, source)
    for name, e in desc["layers"].items():
        mats, archives = _matrices(e, name, arrays, used, source)
        bias = torch.zeros(e["shape"][0] * e["groups"]) if e["bias"] else None
        if e["kind"] == "linear":
            new: nn.Module = CompactLinear(mats[0], bias)
        else:
            c = e["conv"]
            new = CompactConv2d(mats, bias, c["in"], c["out"], tuple(c["kernel"]),
                                tuple(c["stride"]), c["padding"] if isinstance(c["padding"], str)
                                else tuple(c["padding"]), tuple(c["dilation"]), c["groups"])
        new.archives = archives
        new.record = LayerRecord(
            name=name, kind=e["kind"], shape=mats[0].shape, groups=len(mats),
            format=e["format"], bytes=sum(M.nbytes for M in mats), storage=e["storage"],
            stored_bytes=(sum(a.nbytes for a in archives) if archives
                          else sum(M.nbytes for M in mats)),
            entropy_bits=float(e["entropy_bits"] or 0.0),
            energy_pj=sum(energy_pj(M.cost()) for M in mats), reason=e["reason"],
        )
        set_module(model, name, new)
    expected = {k: (tuple(t.shape), t.dtype) for k, t in model.state_dict().items()}
    state_names = desc["state"]
    if set(state_names) != set(expected):
        missing = sorted(set(expected) - set(state_names))
        extra = sorted(set(state_names) - set(expected))
        raise _err(source, f"state tensors do not match the model (missing {missing[:5]}, "
                   f"unexpected {extra[:5]})")
    state = {}
    for k in state_names:
        if k not in arrays or k in used:
            raise _err(source, f"state tensor {k!r} is missing")
        a = arrays[k]
        shape, dtype = expected[k]
        if tuple(a.shape) != shape or _torch_dtype(a) != dtype:
            raise _err(source, f"state tensor {k!r} has {a.dtype}{list(a.shape)}, the model "
                       f"expects {dtype}{list(shape)}")
        _check_state_tensor(k, a, source)
        used.add(k)
        state[k] = torch.from_numpy(np.array(a))  # own memory, not the file buffer
    unused = sorted(set(arrays) - used)
    if unused:
        raise _err(source, f"tensors not referenced by the description: {unused[:5]}")
    _materialise(model, state, source)
    if device is not None and torch.device(device).type != "cpu":
        from compactnn.nn import to_dense

        return to_dense(model).to(device).eval()
    return model.eval()


def _check_state_names(model: nn.Module, desc: dict[str, Any], arrays: dict[str, np.ndarray],
                       source: str) -> None:
    """Every plain tensor the file lists has the shape and dtype the model expects,
    and holds finite values (checked before any compact layer is decoded)."""
    expected = model.state_dict()
    prefixes = tuple(f"{name}." for name in desc["layers"])
    for k in desc["state"]:
        if k not in arrays:
            raise _err(source, f"state tensor {k!r} is missing")
        a = arrays[k]
        t = expected.get(k)
        if t is None:
            if k.startswith(prefixes):
                continue  # a compact layer's own tensor (its bias), checked after it is built
            raise _err(source, f"state tensor {k!r} is not a tensor of the model")
        if tuple(a.shape) != tuple(t.shape) or _torch_dtype(a) != t.dtype:
            raise _err(source, f"state tensor {k!r} has {a.dtype}{list(a.shape)}, the model "
                       f"expects {t.dtype}{list(t.shape)}")
        _check_state_tensor(k, a, source)


# ---- inspecting ------------------------------------------------------------------------


@dataclass
class LayerInfo:
    """One compact layer of a file."""

    name: str
    kind: str
    format: str
    storage: str
    shape: tuple[int, int]
    groups: int
    weights: int
    stored_bytes: int
    runtime_bytes: int
    entropy_bits: float | None
    share: float
    coder: str = "-"  # archive storage: the archive coder(s), "ans" and/or "adaptive"

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.stored_bytes / self.weights if self.weights else 0.0

    @property
    def entropy_bits_per_weight(self) -> float | None:
        if self.entropy_bits is None or not self.weights:
            return None
        return self.entropy_bits / self.weights


@dataclass
class FileInfo:
    """What a file holds and where its bytes go."""

    path: str
    file_bytes: int
    header_bytes: int
    state_bytes: int
    layers: list[LayerInfo]
    model: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    validated: str = "checksums"
    """``"checksums"``: every checksum and the description's structure were verified;
    ``"arrays"`` (``inspect(check=True)``): also every layer's arrays (format checks,
    archive decoding) and the plain tensors, as ``load`` does."""

    def table(self) -> str:
        """The per-layer table as aligned text."""
        head = ("layer", "kind", "format", "stored as", "shape", "bytes", "bits/w",
                "entropy b/w", "share")
        rows = [head]
        for li in self.layers:
            shape = f"{li.groups}x{li.shape[0]}x{li.shape[1]}" if li.groups > 1 else \
                f"{li.shape[0]}x{li.shape[1]}"
            ent = li.entropy_bits_per_weight
            rows.append((li.name, li.kind, li.format,
                         f"archive({li.coder})->{li.format}" if li.storage == "archive"
                         else "raw", shape,
                         str(li.stored_bytes), f"{li.bits_per_weight:.3f}",
                         "-" if ent is None else f"{ent:.3f}", f"{100 * li.share:.1f}%"))
        for label, b in (("plain tensors", self.state_bytes), ("header", self.header_bytes)):
            rows.append((label, "", "", "", "", str(b), "", "",
                         f"{100 * b / self.file_bytes:.1f}%"))
        rows.append(("total", "", "", "", "", str(self.file_bytes), "", "", "100.0%"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i < 5 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)


def inspect(path: str | os.PathLike, *, check: bool = False) -> FileInfo:
    """Read a file's description (verifying every checksum) without building the model;
    with ``check=True`` also validate every array as ``load`` does, and the layers and
    plain tensors against the zoo model the file names (built with its large tensors on
    the meta device). ``FileInfo.validated`` says which."""
    source = os.fspath(path)
    raw = read_bytes(path)
    arrays, desc, nbytes, header = packed.read(raw, source)
    _validate_description(desc, source)
    if check:
        _archive_budget(desc, len(raw), source)
        used: set[str] = set()
        model = adapters.build_from(desc["model"], arrays, used, source, MAX_PARAMS)
        if model is not None:  # the named model, large tensors on meta: geometry and state
            for name, e in desc["layers"].items():
                try:
                    _check_geometry(model.get_submodule(name), e, name, source)
                except AttributeError:
                    raise _err(source, f"layer {name!r} does not exist in the model") from None
            _check_state_names(model, desc, arrays, source)
            del model
        for name, e in desc["layers"].items():
            _matrices(e, name, arrays, used, source)
        for k in desc["state"]:
            if k not in arrays or k in used:
                raise _err(source, f"state tensor {k!r} is missing")
            _check_state_tensor(k, arrays[k], source)
            used.add(k)
        unused = sorted(set(arrays) - used)
        if unused:
            raise _err(source, f"tensors not referenced by the description: {unused[:5]}")
    size = len(raw)
    infos, counted = [], 0
    for name, e in desc["layers"].items():
        prefix = f"{name}.weight."
        stored = sum(b for k, b in nbytes.items() if k.startswith(prefix))
        counted += stored
        m, n = e["shape"]
        coders = sorted({archive.Archive(a).coder for k, a in arrays.items()
                         if k.startswith(prefix) and k.endswith(".archive")
                         and isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 1
                         and a.size >= 20})
        infos.append(LayerInfo(
            name=name, kind=e["kind"], format=e["format"], storage=e["storage"], shape=(m, n),
            groups=e["groups"], weights=e["groups"] * m * n, stored_bytes=stored,
            runtime_bytes=e["bytes"], entropy_bits=e["entropy_bits"],
            share=stored / size, coder="+".join(coders) or "-"))
    state = sum(nbytes[k] for k in desc["state"] if k in nbytes)
    return FileInfo(path=source, file_bytes=size, header_bytes=header, state_bytes=state,
                    layers=infos, model=desc["model"], metadata=desc["metadata"],
                    validated="arrays" if check else "checksums")
