"""Data-aware assignments for weight sharing: GPTQ error compensation.

Plain weight sharing gives each weight its *nearest* codebook value, which minimises
the weight error ``||W - Ŵ||²``. What matters is the layer's output on real inputs:
``||(W - Ŵ) X||²`` summed over the inputs ``x`` the layer sees, a quadratic form in
each row's error with the input second moments ``H = E[x xᵀ]``. GPTQ (Frantar,
Ashkboos, Hoefler, Alistarh, ICLR 2023; after Optimal Brain Quantization) assigns the
columns of ``W`` one at a time and, after each, spreads the column's rounding error
over the columns not yet assigned so that the output error stays as small as
possible (the update is ``δ = -(e / [H⁻¹]_qq) [H⁻¹]_q,:``, computed from the upper
Cholesky factor of ``H⁻¹``). Here the "grid" is the layer's codebook from any 1-D
quantizer (CWS, PWS, UQ, ECSQ), so it works for non-uniform codebooks, and pruned
weights stay exactly zero (their error is compensated like any other).

- :func:`input_moments`: ``H`` of one ``nn.Linear``/``nn.Conv2d`` (``in*kh*kw``
  square) from calibration inputs fed to the whole model; the forward pass stops at
  the layer, so later layers cost nothing.
- :func:`same_input`: the layers called with the very same input tensor right after
  a layer (query, key, value), whose moments are then reused instead of measured again.
- :func:`gptq_assign`: codebook indices of one weight matrix given ``H``.
- :func:`moments_source`: ``moments(name)`` for the layers of one recipe step, from
  evenly spaced training inputs (any data ``compactnn.train.fit`` takes), reusing
  :func:`same_input` siblings' moments.

Devices: the forward passes run where the model is (``moments_source`` moves it to its
``device`` for each measurement and back, under ``autocast`` when asked); the moments
are accumulated in float64 on that device and returned on the CPU. The GPTQ solve runs
on ``device`` too (``gptq_assign(..., device=)``), its result on the CPU.

**[choice]** Damping: ``H + damp · mean(diag H) · I`` with ``damp = 0.1`` (GPTQ's
default is 0.01; on all-MiniLM-L6-v2 0.01 over-fits the calibration sentences: mean
cosine 0.964 against 0.980 with 0.1, see docs/results.md). Columns are visited in
decreasing ``diag H`` ("act order"), in blocks of 128 with lazy updates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compactnn.train import autocast as autocast_ctx
from compactnn.train import device_of, input_sample, on_device
from compactnn.train.data import Data
from compactnn.transforms import parallel
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.shared import index_dtype

__all__ = ["check_calibratable", "gram_into", "input_moments", "same_input", "moments_source",
           "sibling_groups", "gptq_assign"]


class _Reached(Exception):
    """Raised by the hook once the layer's input is recorded: ends the forward pass."""


def _columns(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows of the ``(out, in*kh*kw)`` weight view's columns."""
    if isinstance(layer, nn.Conv2d):
        x = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        return x.transpose(1, 2).reshape(-1, x.shape[1])
    return x.reshape(-1, x.shape[-1])


def check_calibratable(layer: nn.Module) -> None:
    """Raise ``TypeError``/``ValueError`` unless :func:`input_moments` supports ``layer``:
    ``nn.Linear``, or ``nn.Conv2d`` with ``groups=1`` and numeric zero padding."""
    if not isinstance(layer, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"expected nn.Linear or nn.Conv2d, got {type(layer).__name__}")
    if isinstance(layer, nn.Conv2d) and (layer.groups != 1 or layer.padding_mode != "zeros"
                                         or isinstance(layer.padding, str)):
        raise RecipeError("calibration supports Conv2d with groups=1 and numeric zero "
                         "padding only")


GRAM_BLOCK = 256
"""Columns of a layer's input widened to float64 at a time by :func:`gram_into`."""


def gram_into(out: torch.Tensor, cols: torch.Tensor, block: int = GRAM_BLOCK) -> torch.Tensor:
    """``out[:] = cols64ᵀ cols64`` (``cols64``: ``cols`` ``(rows, n)`` in float64) one
    ``block``-column tile at a time, so only two tiles of ``cols`` are ever widened
    (a layer's batch of inputs in float64 is twice its float32 size). Each entry is the
    same dot product over the rows as in the whole product, and the tiles below the
    diagonal are the transposes of those above (``x_i x_j = x_j x_i``): the same bits
    as ``torch.mm`` of the widened whole where the BLAS sums each entry's rows in an
    order that does not depend on the other columns (MKL's on the CPU does; tested)."""
    n = cols.shape[1]
    for i in range(0, n, block):
        a = cols[:, i:i + block].to(torch.float64)
        for j in range(i, n, block):
            b = a if j == i else cols[:, j:j + block].to(torch.float64)
            tile = out[i:i + block, j:j + block]
            torch.mm(a.T, b, out=tile)
            if j != i:
                out[j:j + block, i:i + block] = tile.T
    return out


@torch.no_grad()
def input_moments(model: nn.Module, layer: nn.Module, inputs: torch.Tensor,
                  batch_size: int = 64, *, autocast: str | None = None) -> torch.Tensor:
    """``E[x xᵀ]`` (float64, on the CPU) of the inputs ``layer`` (a submodule of
    ``model``) receives when ``model`` runs on ``inputs`` (a tensor of samples along dim
    0), in eval mode, on the model's device (under ``autocast``: ``"bf16"``, ``"fp16"``).
    A Linear layer applied to ``(..., in)`` tensors counts every position as one input.
    The batches' sums are added in batch order; under ``transforms.parallel.using`` the
    batches are split across the ranks, with the same bits. Memory: the sum, a batch's
    sum (none with one batch) and two column tiles of a batch's inputs in float64
    (:func:`gram_into`), besides the forward pass.
    """
    check_calibratable(layer)
    if len(inputs) == 0:
        raise RecipeError("calibration needs at least one input")
    weight = layer.weight
    width, dev = weight[0].numel(), weight.device
    into: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple) -> None:
        cols = _columns(module, args[0].detach())
        out = into["out"]
        gram_into(out[:-1].view(width, width), cols)
        out[-1] = cols.shape[0]  # the batch's rows, added with the sums
        raise _Reached

    def batch(b: int, out: torch.Tensor) -> torch.Tensor:
        into["out"] = out
        try:
            with autocast_ctx(dev, autocast):
                model(inputs[b * batch_size:(b + 1) * batch_size].to(dev))
        except _Reached:
            return out
        finally:
            into.clear()
        raise RecipeError("the layer was not called by the model's forward pass")

    was_training = model.training
    model.eval()
    handle = layer.register_forward_pre_hook(hook)
    try:  # batch sums added in batch order, on this process or data-parallel
        total = parallel.current().sum_batches(
            -(-len(inputs) // batch_size),
            torch.empty(width * width + 1, dtype=torch.float64, device=dev), batch)
    finally:
        handle.remove()
        model.train(was_training)
    return total[:-1].view(width, width).div_(max(float(total[-1]), 1.0)).cpu()


@torch.no_grad()
def same_input(model: nn.Module, layer: nn.Module, others: Mapping[str, nn.Module],
               inputs: torch.Tensor) -> list[str]:
    """Names of ``others`` that the forward pass on ``inputs`` calls with the very
    tensor ``layer`` receives (as query, key and value share their input), right after
    ``layer`` and before any layer with another input. Their input moments equal
    ``layer``'s, and quantizing ``layer`` cannot change them (their input exists before
    ``layer`` runs). Conservative: a sibling called after another layer is not listed."""
    seen: dict[str, torch.Tensor] = {}
    found: list[str] = []
    names = {id(m): n for n, m in others.items()}

    def first(module: nn.Module, args: tuple) -> None:
        seen.setdefault("x", args[0])

    def later(module: nn.Module, args: tuple) -> None:
        if "x" not in seen or module is layer:
            return
        if args[0] is not seen["x"] or id(module) not in names:
            raise _Reached
        found.append(names[id(module)])

    handles = [layer.register_forward_pre_hook(first)]
    handles += [m.register_forward_pre_hook(later) for m in model.modules()
                if isinstance(m, (nn.Linear, nn.Conv2d))]
    was_training = model.training
    model.eval()
    try:
        model(inputs[:1].to(device_of(model, None)))
    except _Reached:
        pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def moments_source(model: nn.Module, layers: Mapping[str, nn.Module],
                   inputs: torch.Tensor | Data, count: int,
                   tick: Callable[[], object] = lambda: None, *,
                   device: str | torch.device | None = None,
                   autocast: str | None = None) -> Callable[[str], torch.Tensor]:
    """``moments(name)``: the input moments of ``layers[name]`` on ``count`` evenly
    spaced rows of ``inputs`` (a tensor, or data as ``compactnn.train.input_sample``
    reads it; calling ``tick`` once per layer), measured with the model on ``device``
    (``None``: where it is) under ``autocast``. Call it in the order the layers are
    changed: the moments measured for a layer are reused for its ``same_input``
    siblings until another layer is measured."""
    if isinstance(inputs, torch.Tensor):
        count = min(count, len(inputs))
        pick = torch.from_numpy(np.linspace(0, len(inputs) - 1, count).round()
                                .astype(np.int64))
        sample = inputs[pick]
    else:
        sample = input_sample(inputs, count)
    done: set[str] = set()
    reuse: dict[str, torch.Tensor] = {}  # siblings of the last measured layer

    def moments(name: str) -> torch.Tensor:
        done.add(name)
        tick()
        if name in reuse:
            return reuse.pop(name)
        reuse.clear()  # another layer is changed now: the siblings' moments may be stale
        pending = {n: m for n, m in layers.items() if n not in done}
        with on_device(model, device):
            out = input_moments(model, layers[name], sample, autocast=autocast)
            reuse.update(dict.fromkeys(same_input(model, layers[name], pending, sample), out))
        return out

    moments.ready = reuse.keys()  # names whose moments are measured already (siblings)
    return moments


def sibling_groups(order: list[str], moments: Callable[[str], torch.Tensor] | None
                   ) -> Iterator[tuple[list[str], list[torch.Tensor | None]]]:
    """``(names, their moments)`` for the layers ``order`` in turn, in groups that can be
    solved independently of each other: every layer at once without ``moments``
    (data-free), else a measured layer with the ``same_input`` siblings that follow it
    (``moments.ready``, from :func:`moments_source`; a plain callable: one at a time).
    Each group is yielded before the next one's moments are measured."""
    if moments is None:
        if order:
            yield list(order), [None] * len(order)
        return
    i = 0
    while i < len(order):
        group, hs = [order[i]], [moments(order[i])]
        ready = getattr(moments, "ready", ())
        while i + len(group) < len(order) and order[i + len(group)] in ready:
            group.append(order[i + len(group)])
            hs.append(moments(group[-1]))
        i += len(group)
        yield group, hs


def _nearest(codebook: torch.Tensor, zero: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``w -> index`` of the nearest codebook value (-1: zero, when ``zero`` allows it)."""
    index = torch.arange(codebook.numel(), device=codebook.device)
    if zero and not (codebook == 0).any():
        at = int(torch.searchsorted(codebook, codebook.new_zeros(())))
        codebook = torch.cat([codebook[:at], codebook.new_zeros(1), codebook[at:]])
        index = torch.cat([index[:at], index.new_full((1,), -1), index[at:]])
    mids = (codebook[1:] + codebook[:-1]) / 2
    return lambda w: index[torch.searchsorted(mids, w.contiguous())]


@torch.no_grad()
def gptq_assign(weight: torch.Tensor, moments: torch.Tensor, codebook: np.ndarray,
                damp: float = 0.1, block: int = 128, zero: bool = False,
                device: str | torch.device | None = None) -> np.ndarray:
    """Indices into ``codebook`` (ascending, non-empty) for ``weight`` ``(out, in)``
    chosen by GPTQ error compensation under the input second moments ``moments``
    ``(in, in)``; exact zeros of ``weight`` stay zero (index -1). With ``zero``, 0 is
    one more value the other weights may take (index -1), as for quantizers that round
    small weights to zero (UQ). The solve runs on ``device`` (``None``: the weight's).
    Returns ``(out, in)`` indices in the smallest signed integer type holding
    ``-1 .. len(codebook)`` (``shared.index_dtype``).

    >>> w = torch.tensor([[0.3, -0.2, 0.1]])
    >>> gptq_assign(w, torch.eye(3), np.array([-0.25, 0.25], np.float32)).tolist()
    [[1, 0, 1]]
    """
    if weight.ndim != 2 or moments.shape != (weight.shape[1],) * 2:
        raise RecipeError(f"moments must be ({weight.shape[-1]}, {weight.shape[-1]}) for a "
                         f"weight of shape {tuple(weight.shape)}, got {tuple(moments.shape)}")
    if not damp > 0:
        raise RecipeError(f"damp must be > 0, got {damp!r}")
    dev = weight.device if device is None else torch.device(device)
    book = torch.as_tensor(np.asarray(codebook, np.float64)).to(dev)
    if book.ndim != 1 or book.numel() == 0:
        raise RecipeError("the codebook must be a non-empty 1-D array")
    nearest = _nearest(book, zero)
    # one (in, in) float64 matrix besides the moments, factored in place: the permuted
    # moments (an idle input's variance 1), then L, H⁻¹ and its upper factor U
    diag = torch.diagonal(moments.detach()).to(dev, torch.float64)
    idle = diag <= 0
    order = torch.argsort(torch.where(idle, 1.0, diag), descending=True, stable=True)
    H = moments.detach().to(dev, torch.float64)[order[:, None], order[None, :]]
    H.diagonal()[idle[order]] = 1.0
    H.diagonal().add_(damp * torch.diagonal(H).mean())
    U = torch.linalg.cholesky(H, out=H)
    torch.cholesky_inverse(U, out=U)
    torch.linalg.cholesky(U, upper=True, out=U)
    # Row q of Wt is column order[q] of W: each step reads and updates contiguous rows
    # (permuted before it is widened: no float64 copy of W in the original order).
    Wt = weight.detach().T[order.to(weight.device)].to(dev, torch.float64).contiguous()
    keep = Wt != 0
    # indices in the smallest type (int8 for up to 126 values), as SharedWeights keeps
    # them: 1 byte per weight where int64 took 8, twice (the solve's and the result)
    assign = torch.full(Wt.shape, -1, dtype=index_dtype(book.numel()), device=dev)
    with _one_thread(dev):
        _solve(Wt, U, keep, assign, book, nearest, block)
    out = torch.empty(assign.shape[::-1], dtype=assign.dtype, device=dev)
    out[:, order] = assign.T
    return out.cpu().numpy()


@contextlib.contextmanager
def _one_thread(dev: torch.device) -> Iterator[None]:
    """One torch thread on the CPU: the column loop is thousands of small operations,
    where OpenMP's barriers cost more than a second thread gives (10x slower on a
    loaded 2-core machine); elementwise results do not depend on the thread count."""
    if dev.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _solve(Wt: torch.Tensor, U: torch.Tensor, keep: torch.Tensor, assign: torch.Tensor,
           book: torch.Tensor, nearest: Callable[[torch.Tensor], torch.Tensor],
           block: int) -> None:
    """GPTQ's column loop on the transposed weight ``Wt`` (rows in visiting order), in
    place: ``assign`` gets the indices, ``Wt`` the compensated remainders."""
    n = Wt.shape[0]
    for a in range(0, n, block):
        b = min(a + block, n)
        Wb, Ub = Wt[a:b], U[a:b, a:b]
        errors = torch.zeros_like(Wb)
        for j in range(b - a):
            w = Wb[j]
            idx = torch.where(keep[a + j], nearest(w), -1)
            q = torch.where(idx >= 0, book[idx.clamp(min=0)], 0.0)
            assign[a + j] = idx
            e = (w - q) / Ub[j, j]
            Wb[j:] -= Ub[j, j:, None] * e[None, :]
            errors[j] = e
        Wt[b:] -= (errors.T.contiguous() @ U[a:b, b:]).T
