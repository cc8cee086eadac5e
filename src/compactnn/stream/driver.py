"""Block-by-block compression of a Hugging Face causal LM folder into one compact file
(``docs/architecture/streaming.md``).

The model is built on the meta device (:mod:`compactnn.stream.model`); the head's
weights are read from the shards, the calibration inputs run through it once (the
forward pass stops at the first block, whose inputs and keyword arguments, e.g. rotary
tables and the attention mask, are kept on CPU), and its tensors are written. Then for
each block, and last for the tail (final norm + LM head): its weights are read from the
shards, the recipe runs on it (``transforms.compress_``, calibrated on the block's
inputs, i.e. the outputs of the compressed block before it), the block's outputs on the
calibration inputs become the next block's inputs, its Linear layers become compact
(``nn.to_compact``), it is appended to the file (``io.stream.StreamWriter``) and freed.
After each block the next inputs are written to ``.<name>.stream-acts-<i>.pt`` and the
writer checkpoints, so ``resume=True`` restarts after the last finished block.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import time
import zlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compactnn.errors import UserError
from compactnn.io import adapters
from compactnn.io.container import canonical_json
from compactnn.io.files import write_atomic
from compactnn.io.stream import StreamWriter
from compactnn.stream import encode
from compactnn.stream.model import Parts
from compactnn.transforms import compress_, parallel
from compactnn.transforms.recipe import Recipe, as_recipe

__all__ = ["compress", "BlockStat", "StreamError", "check_streamable"]

BATCH = 64  # rows per forward pass, as transforms.calibrate.input_moments


class StreamError(UserError):
    """A recipe or run that cannot be streamed block by block."""


@dataclass(frozen=True)
class BlockStat:
    """One finished part: its name, seconds and the process's peak RSS (MiB) while it
    ran (Linux; elsewhere the peak of the process so far)."""

    name: str
    seconds: float
    peak_mib: float


def check_streamable(recipe: Recipe) -> None:
    """``StreamError`` unless every step acts on each layer on its own: no fine-tuning,
    no global pruning or shared codebooks, no explicit layer lists, no permutations or
    MPD (which tie layers across blocks)."""
    for i, s in enumerate(recipe.to_list()):
        m = s.get("method")
        why = None
        if m in ("finetune", "mpd", "permute"):
            why = f"{m} needs the whole model"
        elif "layers" in s or "overrides" in s:
            why = "layer lists and overrides are not supported (the step acts on every layer)"
        elif s.get("scope") == "global":
            why = "global pruning ranks weights across blocks"
        elif s.get("shared"):
            why = "a shared codebook spans blocks"
        elif s.get("schedule"):
            why = "iterative pruning fine-tunes the whole model"
        if why:
            raise StreamError(f"recipe step {i} ({m}) cannot be streamed: {why}")


class _Stage(nn.Module):
    """One part at its path in the full model (so its layer names are the model's),
    called on ``(rows, positions, hidden + 1)`` tensors whose last channel is the
    sample's row index (which selects its keyword arguments)."""

    def __init__(self, modules: dict[str, nn.Module], call) -> None:
        super().__init__()
        for path, mod in modules.items():
            parent: nn.Module = self
            *heads, leaf = path.split(".")
            for h in heads:
                if not hasattr(parent, h):
                    parent.add_module(h, nn.Module())
                parent = getattr(parent, h)
            parent.add_module(leaf, mod)
        self._call = call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x[:, 0, -1].long()
        return self._call(x[..., :-1], rows)


def _rows(v: Any, rows: torch.Tensor, n: int) -> Any:
    if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n:
        return v[rows]
    if isinstance(v, tuple):
        return tuple(_rows(t, rows, n) for t in v)
    if isinstance(v, dict):
        return {k: _rows(t, rows, n) for k, t in v.items()}
    return v


def _capture(parts: Parts, ids: torch.Tensor) -> tuple[torch.Tensor, tuple, dict[str, Any]]:
    """Block 0's input hidden states and its other arguments for the samples ``ids``
    (``(n, 2, length)``: token ids and attention mask)."""
    got: dict[str, Any] = {}

    class _Stop(Exception):
        pass

    def hook(module, args, kwargs):
        if args:
            got["h"], got["args"] = args[0], args[1:]
        else:
            got["h"], got["args"] = kwargs.pop("hidden_states"), ()
        got["kwargs"] = kwargs
        raise _Stop

    handle = parts.blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            parts.model(input_ids=ids[:, 0], attention_mask=ids[:, 1], use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "h" not in got:
        raise StreamError("the model's forward pass did not reach its first block")
    return got["h"].detach(), got["args"], got["kwargs"]


def _with_rows(h: torch.Tensor) -> torch.Tensor:
    idx = torch.arange(len(h), dtype=h.dtype).view(-1, 1, 1).expand(*h.shape[:-1], 1)
    return torch.cat([h, idx], dim=-1)


def _fingerprint(*parts: Any) -> str:
    return f"{zlib.crc32(canonical_json(parts).encode('ascii')) & 0xFFFFFFFF:08x}"


def _acts_path(output: str, i: int) -> str:
    folder, base = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{base}.stream-acts-{i}.pt")


def _trim() -> None:
    """Give freed heap memory back to the system (glibc keeps large freed blocks for
    reuse, so a block's buffers would stay in the resident set); a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> None:
    """Start a new peak-RSS window (Linux: ``VmHWM`` reset through ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_mib() -> float:
    """The peak RSS (MiB) since :func:`_reset_peak` (elsewhere: of the whole process)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def compress(folder: str | os.PathLike, recipe: Any, inputs: torch.Tensor,
             output: str | os.PathLike, *, policy: Any = "smallest", storage: str = "auto",
             candidates: list[str] | None = None, metadata: dict[str, Any] | None = None,
             resume: bool = False, stop_after: int | None = None,
             workers: int = 1) -> list[BlockStat]:
    """Compress the causal LM in ``folder`` block by block into the compact file ``output``.

    Under ``transforms.parallel.using(Parallel())`` (``torchrun``) every rank calls it
    with the same arguments: the block forward passes, calibration batches and layer
    solves, the layer reports and the conversion of the layers are split across the ranks,
    and rank 0 writes the file (the same bytes as one process).

    Args:
        folder: a Hugging Face folder (``config.json``, ``model.safetensors`` or shards).
        recipe: a ``Recipe``, list of steps or recipe file; every step must act per
            layer (:func:`check_streamable`). Layer names are the model's own.
        inputs: ``(n, 2, length)`` token ids and attention masks (``zoo.hf_task``).
        output: the compact file; written atomically at the end.
        policy, storage, candidates: as ``nn.to_compact``.
        metadata: the file's metadata.
        resume: continue an interrupted run with the same arguments after its last
            finished block.
        stop_after: stop (as if killed) after this many parts (head + blocks + tail
            count one each); for tests of ``resume``.
        workers: processes that encode a block's layers in parallel
            (``stream.encode``); the file is the same bytes for any number.

    Returns the finished parts' times and peak memory (rank 0: the file's parts).
    """
    output = os.fspath(output)
    recipe = as_recipe(recipe)
    check_streamable(recipe)
    if type(workers) is not int or workers < 1:
        raise StreamError(f"workers must be an integer >= 1, got {workers!r}")
    par = parallel.current()
    lead = par.rank == 0
    parts = Parts(folder)
    n_blocks = len(parts.blocks)
    finger = _fingerprint(recipe.to_list(), repr(policy), storage, candidates, metadata,
                          f"{zlib.crc32(inputs.numpy().tobytes()):08x}",
                          {k: list(parts.shards.shape(k)) for k in parts.shards.names()})
    if par.map([(1.0, lambda: finger)])[0] != finger:
        raise StreamError("the ranks were given other arguments, inputs or weights")
    writer = StreamWriter(output, resume=resume) if lead else None
    encoders = encode.Encoders(workers) if lead and workers > 1 else None
    stats: list[BlockStat] = []
    try:
        if lead and resume and writer.extra.get("fingerprint") != finger:
            raise StreamError(f"{output}: cannot resume: the interrupted run used other "
                              "arguments, inputs or weights")
        start = writer.extra.get("next", 0) if lead and resume else 0
        start = par.map([(1.0, lambda: start)])[0]
        t0 = time.perf_counter()
        _reset_peak()
        parts.fill_head()
        h, args, kwargs = _capture(parts, inputs)
        if lead and not resume:
            writer.append_arrays(adapters.file_tensors(parts.model))
            writer.add_state(parts.head_state())
        parts.drop_head()
        n = len(inputs)
        if start > 0:
            h = par.map([(1.0, lambda: _load_acts(output, start))])[0]
        else:
            if lead:
                _save_acts(output, 0, h)
                writer.checkpoint({"next": 0, "fingerprint": finger})
            stats.append(BlockStat("head", time.perf_counter() - t0, _peak_mib()))
        done = 1
        for i in range(start, n_blocks + 1):
            if stop_after is not None and done >= stop_after:
                return stats
            t0 = time.perf_counter()
            _reset_peak()
            stage, path = _stage(parts, i, args, kwargs, n)
            x = _with_rows(h)
            compress_(stage, recipe, TensorDataset(x, x))
            stage.eval()
            if i < n_blocks:  # the next block's inputs, batches split across the ranks
                with torch.no_grad():
                    h = torch.cat(par.map([(1.0, functools.partial(stage, x[j:j + BATCH]))
                                           for j in range(0, n, BATCH)]))
            del x
            encode.add(writer, stage, policy, storage, candidates, encoders)  # every rank
            if i < n_blocks:
                parts.blocks[i] = nn.Identity()
            if lead:
                if i < n_blocks:
                    _save_acts(output, i + 1, h)
                writer.checkpoint({"next": i + 1, "fingerprint": finger})
                _remove(_acts_path(output, i))
            del stage
            _trim()
            stats.append(BlockStat(path, time.perf_counter() - t0, _peak_mib()))
            done += 1
        if lead:
            entry = {"class": f"{type(parts.model).__module__}."
                              f"{type(parts.model).__qualname__}",
                     "zoo": None, **adapters.spec_entries(parts.model)}
            writer.finish(entry, metadata)
            _remove(_acts_path(output, n_blocks + 1))
        par.map([(1.0, lambda: None)])  # the other ranks return once the file exists
    finally:
        if writer is not None:
            writer.close()
        if encoders is not None:
            encoders.close()
    return stats


def _stage(parts: Parts, i: int, args: tuple, kwargs: dict[str, Any], n: int
           ) -> tuple[_Stage, str]:
    """Block ``i`` (the tail when ``i`` is the number of blocks) read from the shards,
    at its path in a ``_Stage``, in eval mode; and its path."""
    if i < len(parts.blocks):
        path = f"{parts.blocks_path}.{i}"
        block = parts.fill(path)

        def call(x, rows, block=block):
            out = block(x, *_rows(args, rows, n), **_rows(kwargs, rows, n))
            return out[0] if isinstance(out, tuple) else out

        stage = _Stage({path: block}, call)
    else:
        path = "tail"
        mods = [parts.fill(p) for p in parts.tail]

        def call(x, rows, mods=mods):
            for m in mods:
                x = m(x)
            return x

        stage = _Stage(dict(zip(parts.tail, mods, strict=True)), call)
    return stage.eval(), path


def _load_acts(output: str, i: int) -> torch.Tensor:
    try:
        return torch.load(_acts_path(output, i), weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise StreamError(f"{output}: cannot resume: the inputs of block {i} "
                          f"are unreadable ({exc})") from None


def _save_acts(output: str, i: int, h: torch.Tensor) -> None:
    write_atomic(_acts_path(output, i), writer=lambda tmp: torch.save(h, tmp))


def _remove(p: str) -> None:
    if os.path.lexists(p):
        os.unlink(p)
