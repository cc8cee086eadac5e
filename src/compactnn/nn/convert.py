"""``to_compact``: replace every ``nn.Linear`` / ``nn.Conv2d`` of a model by a compact
layer, picking each layer's format with a policy and recording why.

Policies: ``"smallest"`` (fewest bytes of the runtime arrays), ``"energy"`` (lowest
modelled energy of one product, ``compactnn.cost.energy_pj``), ``"fastest"`` (lowest
measured median product time at the caller's batch size), a format id, or a dict
mapping layer names to any of those (layers not named use ``"smallest"``). Every
registered format is a candidate; a format that cannot encode a layer (or would not
round-trip it bit-exactly) is skipped and noted. Independently of the runtime format,
``storage`` decides how the weights are written to a file: ``"raw"`` (the runtime
arrays), ``"archive"`` (an entropy-coded stream decoded at load, ``compactnn.coding.archive``)
or ``"auto"`` (whichever is smaller).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from compactnn import formats
from compactnn.coding import archive, entropy_bits
from compactnn.cost import energy_pj
from compactnn.cost.timing import time_call
from compactnn.errors import UserError
from compactnn.formats import CompactMatrix
from compactnn.nn.chain import install_chains, remove_chains
from compactnn.nn.layers import CompactConv2d, CompactLinear, LayerRecord, UnsupportedLayerError
from compactnn.nn.structured import CONV_LIKE, STRUCTURED, dense_twin, structured_encodings
from compactnn.nn.tree import set_module

__all__ = ["POLICIES", "STORAGES", "to_compact", "to_dense", "layer_records",
           "compactable_layers"]

POLICIES = ("smallest", "fastest", "energy")
STORAGES = ("auto", "raw", "archive")

Policy = str | Mapping[str, str]


def compactable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every ``nn.Linear`` / ``nn.Conv2d`` and structured layer
    (``PermutedLinear``, ``BlockDiagLinear``, ``BlockDiagConv2d``) that ``to_compact``
    replaces (the projections inside ``nn.MultiheadAttention`` are left alone: their
    parent reads the weights directly)."""
    skip = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, *STRUCTURED)) and id(m) not in skip]


def layer_records(model: nn.Module) -> list[LayerRecord]:
    """The ``LayerRecord`` of every compact layer of ``model``, in module order."""
    return [m.record for _, m in model.named_modules()
            if isinstance(m, (CompactLinear, CompactConv2d)) and m.record is not None]


def _check_layer(name: str, m: nn.Module) -> None:
    if m.weight.dtype != torch.float32:
        raise UnsupportedLayerError(
            f"layer {name!r}: weights are {m.weight.dtype}; convert the model with .float() "
            "first (exact for bfloat16, which format lossless_float then stores in its 16 bits)")
    if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
        raise UnsupportedLayerError(
            f"layer {name!r}: padding_mode={m.padding_mode!r} is not supported (only 'zeros')")


def _weight_groups(name: str, m: nn.Module) -> list[np.ndarray]:
    _check_layer(name, m)
    W = m.weight.detach().cpu().numpy()
    if isinstance(m, nn.Linear):
        return [np.ascontiguousarray(W)]
    og = m.out_channels // m.groups
    return [np.ascontiguousarray(W[g * og:(g + 1) * og].reshape(og, -1))
            for g in range(m.groups)]


def _encode(fid: str, mats: list[np.ndarray], own: CompactMatrix | None = None
            ) -> list[CompactMatrix]:
    """Encode each weight group in format ``fid`` (``own``: the layer's own encoding of
    its single group, see ``structured_encodings``); checked bit-exact."""
    F = formats.get(fid)
    out = []
    for W in mats:
        M = F.from_dense(W) if own is None else own
        if not np.array_equal(M.to_dense().view(np.uint32), W.view(np.uint32)):
            raise ValueError(f"{fid} does not round-trip this matrix bit-exactly")
        out.append(M)
    return out


def _time(mats: list[CompactMatrix], cols: int, seed: int, rows: bool) -> float:
    """Median time of the layer's products at ``cols`` columns, in the layout the layer
    runs: inputs as rows (``rmatmul``, Linear) or as columns (``matmul``, Conv2d)."""
    rng = np.random.default_rng(seed)
    n = mats[0].shape[1]
    if cols == 1:
        x = rng.standard_normal(n).astype(np.float32)
        fn: Callable[[], Any] = lambda: [M.matvec(x) for M in mats]  # noqa: E731
    elif rows:
        X = rng.standard_normal((cols, n)).astype(np.float32)
        fn = lambda: [M.rmatmul(X) for M in mats]  # noqa: E731
    else:
        X = rng.standard_normal((n, cols)).astype(np.float32)
        fn = lambda: [M.matmul(X) for M in mats]  # noqa: E731
    return time_call(fn, repeats=15, warmup=2, max_total_s=0.3).median


def _input_columns(model: nn.Module, layers: list[tuple[str, nn.Module]],
                   example_input: torch.Tensor) -> dict[str, int]:
    """Columns of each layer's product (batch x positions) for ``example_input``."""
    cols: dict[str, int] = {}
    hooks = []
    for name, m in layers:
        def hook(mod, inp, out, name=name):
            if isinstance(mod, CONV_LIKE):
                cols[name] = int(out.shape[0] * out.shape[-1] * out.shape[-2]) if out.dim() == 4 \
                    else int(out.shape[-1] * out.shape[-2])
            else:
                cols[name] = int(np.prod(out.shape[:-1]))
        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return cols


def _layer_policy(policy: Policy, name: str) -> str:
    if isinstance(policy, Mapping):
        return policy.get(name, "smallest")
    return policy


def _validate_policy(policy: Policy, names: Iterable[str]) -> None:
    known = set(POLICIES) | set(formats.available())
    if isinstance(policy, Mapping):
        unknown = sorted(set(policy) - set(names))
        if unknown:
            raise UserError(f"policy names layers that do not exist: {', '.join(unknown)}")
        values = list(policy.values())
    elif isinstance(policy, str):
        values = [policy]
    else:
        raise TypeError(f"policy must be a string or a mapping, got {type(policy).__name__}")
    for v in values:
        if v not in known:
            raise UserError(
                f"unknown policy or format {v!r}; policies: {', '.join(POLICIES)}; "
                f"formats: {', '.join(formats.available())}")


def _convert_layer(name: str, m: nn.Module, policy: str, storage: str, cols: int | None,
                   seed: int, candidates: list[str]) -> nn.Module:
    own = structured_encodings(m)
    m = dense_twin(m)
    mats = _weight_groups(name, m)
    fids = candidates if policy in POLICIES else [policy]
    cands: dict[str, list[CompactMatrix]] = {}
    failed: dict[str, str] = {}
    sizes: dict[str, int] = {}
    energies: dict[str, float] = {}
    score = sizes if policy == "smallest" else energies if policy == "energy" else None
    for fid in fids:
        try:
            ms = _encode(fid, mats, own.get(fid))
        except (ValueError, TypeError) as exc:
            failed[fid] = str(exc)
            continue
        sizes[fid] = sum(M.nbytes for M in ms)
        energies[fid] = sum(energy_pj(M.cost()) for M in ms)
        if score is not None and cands:  # keep the best so far only (the first on ties)
            best = next(iter(cands))
            if score[fid] >= score[best]:
                del ms  # not kept while the next candidate is encoded
                continue
            del cands[best]
        cands[fid] = ms
        del ms
    if not sizes:
        raise UnsupportedLayerError(f"layer {name!r}: no format can store it ({failed})")
    times = None
    if policy == "smallest":
        fid = min(sizes, key=sizes.__getitem__)
        reason = f"smallest: {sizes[fid]} B"
    elif policy == "energy":
        fid = min(energies, key=energies.__getitem__)
        reason = f"energy: {energies[fid]:.4g} pJ per product"
    elif policy == "fastest":
        assert cols is not None
        rows = isinstance(m, nn.Linear)
        times = {f: _time(ms, cols, seed, rows) for f, ms in cands.items()}
        fid = min(times, key=times.__getitem__)
        reason = f"fastest at {cols} columns"  # the times are in the record, not the file
    else:
        fid = policy
        reason = "fixed format"
    if failed:
        reason += f" (skipped: {', '.join(sorted(failed))})"
    chosen = cands[fid]
    archives = None
    if storage != "raw":
        encoded = [archive.encode(W) for W in mats]
        if all(a is not None for a in encoded):
            arrays = formats.get(fid).arrays
            raw_cost = sizes[fid] + len(mats) * sum(_entry_bytes(name, a) for a in arrays)
            archive_cost = sum(a.nbytes + _entry_bytes(name, "archive")  # type: ignore[union-attr]
                               for a in encoded)
            if storage == "archive" or archive_cost < raw_cost:
                archives = encoded
        elif storage == "archive":
            reason += " (no archive: matrix too large or its codebook outweighs its values)"
    bias = m.bias.detach().cpu() if m.bias is not None else None
    if isinstance(m, nn.Linear):
        layer: nn.Module = CompactLinear(chosen[0], bias)
        kind = "linear"
    else:
        layer = CompactConv2d(chosen, bias, m.in_channels, m.out_channels, m.kernel_size,
                              m.stride, m.padding, m.dilation, m.groups)
        kind = "conv2d"
    layer.archives = archives
    layer.record = LayerRecord(
        name=name, kind=kind, shape=chosen[0].shape, groups=len(chosen), format=fid,
        bytes=sizes[fid], storage="archive" if archives else "raw",
        stored_bytes=sum(a.nbytes for a in archives) if archives else sizes[fid],
        entropy_bits=entropy_bits(np.concatenate([W.reshape(-1) for W in mats])),
        energy_pj=energies[fid], reason=reason, candidates=sizes, times=times,
    )
    return layer


def _entry_bytes(layer: str, array: str) -> int:
    """Approximate header bytes one stored tensor costs in a file: its safetensors entry
    (``"<layer>.weight.<array>":{"dtype":"U8","shape":[n],"data_offsets":[a,b]},``) and
    its escaped checksum in the description (``\\"<name>\\":\\"<crc32>\\",``)."""
    name = len(f"{layer}.weight.{array}")
    return (name + 60) + (name + 18)


def to_compact(
    model: nn.Module,
    policy: Policy = "smallest",
    *,
    storage: str = "auto",
    batch_size: int = 1,
    example_input: torch.Tensor | None = None,
    inplace: bool = False,
    seed: int = 0,
    progress: bool = False,
    candidates: Iterable[str] | None = None,
) -> nn.Module:
    """Return ``model`` with every ``nn.Linear`` / ``nn.Conv2d`` replaced by a
    ``CompactLinear`` / ``CompactConv2d`` in the format the policy picks.

    Structured layers convert too: a ``PermutedLinear`` or ``BlockDiagLinear`` to a
    ``CompactLinear``, a ``BlockDiagConv2d`` to a ``CompactConv2d``, each computing the
    same function in the original feature order; their own format (``permseq`` from the
    layer's seed or indices, seeded ``blockdiag`` for block-masked layers) is one of the
    candidates (``compactnn.nn.structured``).

    Each compact layer carries a ``LayerRecord`` (``layer.record``; all of them:
    ``layer_records(model)``). ``"fastest"`` times each candidate's product on the
    columns the layer sees for ``example_input`` (batch x positions) or, without it,
    ``batch_size`` columns (linear layers only). ``candidates`` restricts the formats
    the policies choose from (default: every registered format; e.g. leave out
    ``"dense"`` to keep every layer in a compact format). Biases, normalisation and
    every other layer are kept as they are. The input model is copied unless
    ``inplace``. Sequentials of compact Linear layers and ReLUs run as one native call
    (``compactnn.nn.chain``).

    >>> from torch import nn
    >>> cm = to_compact(nn.Sequential(nn.Linear(4, 3)), "csr")
    >>> layer_records(cm)[0].format
    'csr'
    """
    if storage not in STORAGES:
        raise UserError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    layers = compactable_layers(model)
    _validate_policy(policy, [n for n, _ in layers])
    fids = list(formats.available() if candidates is None else candidates)
    unknown = sorted(set(fids) - set(formats.available()))
    if unknown or not fids:
        raise UserError(f"candidates must be registered formats, got {unknown or 'none'}")
    for name, m in layers:
        _check_layer(name, m)
    cols: dict[str, int] = {}
    if any(_layer_policy(policy, n) == "fastest" for n, _ in layers):
        if example_input is not None:
            cols = _input_columns(model, layers, example_input)
        elif any(isinstance(m, CONV_LIKE) for _, m in layers):
            raise UserError("policy 'fastest' needs example_input for models with Conv2d layers")
        else:
            cols = {n: batch_size for n, _ in layers}
    if not inplace:
        model = copy.deepcopy(model)
        layers = compactable_layers(model)
    it: Iterable[tuple[str, nn.Module]] = layers
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(layers, desc="convert", unit="layer")
    for name, m in it:
        new = _convert_layer(name, m, _layer_policy(policy, name), storage, cols.get(name), seed,
                             fids)
        set_module(model, name, new)
    install_chains(model)
    return model.eval()


def to_dense(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every compact layer decoded back to ``nn.Linear`` /
    ``nn.Conv2d`` (bit-identical weights): the dense twin used as the baseline."""
    model = copy.deepcopy(model)
    remove_chains(model)
    for name, m in list(model.named_modules()):
        if isinstance(m, CompactLinear):
            new: nn.Module = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        elif isinstance(m, CompactConv2d):
            new = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                            m.dilation, m.groups, bias=m.bias is not None)
        else:
            continue
        with torch.no_grad():
            new.weight.copy_(torch.from_numpy(m.weight_matrix()).reshape(new.weight.shape))
            if m.bias is not None:
                new.bias.copy_(m.bias)
        set_module(model, name, new)
    return model.eval()
