"""Pruning that looks at the layer's inputs: Wanda and SparseGPT, unstructured or N:M.

Magnitude pruning drops the smallest ``|w|``. What a pruned weight costs is its
contribution to the layer's output on real inputs, ``||(W - Ŵ) X||²``, a quadratic
form in each row's error with the input second moments ``H = E[x xᵀ]`` (the layer-wise
Hessian, the moments ``compactnn.transforms.calibrate.input_moments`` measures):

- **Wanda** (Sun, Liu, Bair, Kolter, 2023): score ``|W_ij| · sqrt(H_jj)`` (weight
  times the RMS of its input), compared within each output row (unstructured) or each
  group of M inputs (N:M); the kept weights are unchanged.
- **SparseGPT** (Frantar and Alistarh, ICML 2023): Optimal Brain Surgeon with lazy
  block updates. Columns are visited in order in blocks of 128; at the start of a
  block (unstructured) or of each group of M columns (N:M) the weights with the
  smallest ``w² / [U]_jj²`` (``U`` the upper Cholesky factor of ``H⁻¹``) are chosen
  for pruning; each column's error is then spread over the columns not yet visited,
  ``δ = -(e / U_jj) U_j,:``, so the kept weights change to compensate (the same
  update as GPTQ, ``calibrate.gptq_assign``, with "round to zero or keep" instead of
  "round to the codebook").

**Patterns.** ``None``: unstructured, ``p`` percent of the layer (SparseGPT: per block
of columns, the block's share of the layer's count, so the layer total is exact;
Wanda: ``round(p · in)`` per row). ``(n, m)``: at most ``n`` non-zeros in every group
of ``m`` consecutive inputs of a row (``(2, 4)`` is NVIDIA's 2:4; a last partial group
of ``r < m`` inputs keeps at most ``min(n, r)``). Weights that are exactly zero
already (earlier pruning, block masks) always count as pruned.

**[choice]** Damping as in ``calibrate``: ``H + damp · mean(diag H) · I``; inputs that
never fire (``H_jj = 0``) get ``H_jj = 1``.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn.utils import parametrize

from compactnn.transforms.errors import RecipeError
from compactnn.transforms.prune import Masked, constraint_of

__all__ = ["CRITERIA", "parse_pattern", "nm_keep", "select_keep", "wanda_keep",
           "sparsegpt_prune", "prune_solve", "prune_apply_", "prune_layer_"]

CRITERIA = ("magnitude", "wanda", "sparsegpt")


def parse_pattern(text: str) -> tuple[int, int]:
    """``"N:M"`` -> ``(n, m)`` with ``1 <= n < m``: at most n non-zeros per m weights.

    >>> parse_pattern("2:4")
    (2, 4)
    """
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) < int(m.group(2)):
        raise RecipeError(f"pattern must be 'N:M' with 1 <= N < M (at most N non-zeros in "
                         f"every M consecutive weights), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def nm_keep(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask of the ``n`` highest scores in every group of ``m`` consecutive entries
    of each row of ``scores`` ``(rows, cols)`` (ties: the earlier entry).

    >>> nm_keep(torch.tensor([[4., 1., 3., 2., 0., 5.]]), 2, 4).tolist()
    [[True, False, True, False, True, True]]
    """
    rows, cols = scores.shape
    full = cols // m * m
    keep = torch.zeros(rows, cols, dtype=torch.bool, device=scores.device)
    if full:
        g = scores[:, :full].reshape(rows, -1, m)
        order = torch.argsort(-g, dim=-1, stable=True)[..., :n]
        keep[:, :full] = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, order, True) \
            .reshape(rows, full)
    if full < cols:
        tail = scores[:, full:]
        order = torch.argsort(-tail, dim=-1, stable=True)[:, :min(n, cols - full)]
        keep[:, full:] = torch.zeros_like(tail, dtype=torch.bool).scatter_(-1, order, True)
    return keep


def select_keep(scores: torch.Tensor, p: float, pattern: tuple[int, int] | None = None,
                per_row: bool = True) -> torch.Tensor:
    """Keep-mask pruning the lowest scores: ``round(p/100 · cols)`` per row
    (``per_row``) or ``round(p/100 · size)`` overall, or by an N:M ``pattern``."""
    if pattern is not None:
        return nm_keep(scores, *pattern)
    flat = scores.reshape(scores.shape[0], -1) if per_row else scores.reshape(1, -1)
    count = round(p / 100 * flat.shape[1])
    keep = torch.ones_like(flat, dtype=torch.bool)
    if count:
        order = torch.argsort(flat, dim=1, stable=True)[:, :count]
        keep.scatter_(1, order, False)
    return keep.reshape(scores.shape)


def _check(weight: torch.Tensor, moments: torch.Tensor) -> None:
    if weight.ndim != 2 or moments.shape != (weight.shape[1],) * 2:
        raise RecipeError(f"moments must be ({weight.shape[-1]}, {weight.shape[-1]}) for a "
                         f"weight of shape {tuple(weight.shape)}, got {tuple(moments.shape)}")


@torch.no_grad()
def wanda_keep(weight: torch.Tensor, moments: torch.Tensor, p: float,
               pattern: tuple[int, int] | None = None) -> torch.Tensor:
    """Wanda keep-mask of ``weight`` ``(out, in)``: score ``|W| · sqrt(diag H)``,
    lowest pruned per row (or per N:M group); exact zeros are always pruned."""
    _check(weight, moments)
    w = weight.detach().to(torch.float64)
    score = w.abs() * torch.diagonal(moments).to(torch.float64).clamp(min=0).sqrt()[None, :]
    score[w == 0] = -1.0
    return select_keep(score, p, pattern, per_row=True)


@torch.no_grad()
def sparsegpt_prune(weight: torch.Tensor, moments: torch.Tensor, p: float,
                    pattern: tuple[int, int] | None = None, damp: float = 0.1,
                    block: int = 128, device: str | torch.device | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT on ``weight`` ``(out, in)`` with input moments ``H`` ``(in, in)``:
    ``(new weight float32, keep mask)``; pruned entries are +0.0 and the kept ones are
    updated to compensate. Exact zeros of ``weight`` stay zero. The solve runs on
    ``device`` (``None``: the weight's); both results are on the weight's device.

    Inputs 0 and 1 are always equal, so weight 1 can take over weight 0's share:

    >>> w = torch.tensor([[0.5, 0.5, 0.3, -0.3]])
    >>> H = torch.tensor([[1., 1., 0, 0], [1., 1., 0, 0], [0, 0, 1., 0], [0, 0, 0, 1.]])
    >>> new, keep = sparsegpt_prune(w, H, 25)
    >>> keep.tolist(), [round(v, 3) for v in new[0].tolist()]
    ([[False, True, True, True]], [0.0, 0.955, 0.3, -0.3])
    """
    _check(weight, moments)
    if not damp > 0:
        raise RecipeError(f"damp must be > 0, got {damp!r}")
    if pattern is not None:  # a block holds whole groups
        block = max(pattern[1], block // pattern[1] * pattern[1])
    rows, n = weight.shape
    dev = weight.device if device is None else torch.device(device)
    W = weight.detach().to(dev, torch.float64, copy=True)
    zero = W == 0
    H = moments.detach().to(dev, torch.float64, copy=True)
    idle = torch.diagonal(H) <= 0
    H[idle, idle] = 1.0
    H.diagonal().add_(damp * torch.diagonal(H).mean())
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    d = torch.diagonal(U)
    keep = torch.ones(rows, n, dtype=torch.bool, device=dev)
    total = round(p / 100 * rows * n)
    for a in range(0, n, block):
        b = min(a + block, n)
        Wb, Ub = W[:, a:b], U[a:b, a:b]
        errors = torch.zeros_like(Wb)
        if pattern is None:  # the block's share of the layer's count
            count = round(total * b / n) - round(total * a / n)
            score = Wb ** 2 / d[a:b][None, :] ** 2
            score[zero[:, a:b]] = -1.0
            kb = torch.ones(rows * (b - a), dtype=torch.bool, device=dev)
            kb[torch.argsort(score.reshape(-1), stable=True)[:count]] = False
            keep[:, a:b] = kb.reshape(rows, b - a)
        for j in range(b - a):
            if pattern is not None and j % pattern[1] == 0:
                g = slice(j, min(j + pattern[1], b - a))
                score = Wb[:, g] ** 2 / d[a:b][g][None, :] ** 2
                score[zero[:, a:b][:, g]] = -1.0
                keep[:, a + g.start:a + g.stop] = nm_keep(score, *pattern)
            w = Wb[:, j]
            q = torch.where(keep[:, a + j], w, 0.0)
            e = (w - q) / Ub[j, j]
            Wb[:, j:] -= e[:, None] * Ub[j, j:][None, :]
            Wb[:, j] = q
            errors[:, j] = e
        W[:, b:] -= errors @ U[a:b, b:]
    out = torch.where(keep, W, 0.0).to(weight.device, torch.float32)
    return out, keep.to(weight.device)


@torch.no_grad()
def prune_solve(layer: nn.Module, p: float, criterion: str = "magnitude",
                pattern: tuple[int, int] | None = None, moments: torch.Tensor | None = None,
                damp: float = 0.1, device: str | torch.device | None = None,
                rows: tuple[int, int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What :func:`prune_layer_` does to ``layer``, without changing it: ``(keep-mask
    in the weight's shape, new weights or None)``; a task independent of other layers'
    (``transforms.parallel``). ``rows=(lo, hi)``: the result for those output rows
    only, for the criteria whose rows are independent (:func:`rows_independent`)."""
    if criterion not in CRITERIA:
        raise RecipeError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    con = constraint_of(layer)
    if con is not None and not isinstance(con, Masked):
        raise RecipeError("the layer is weight-shared; prune before sharing weights")
    shape = layer.weight.shape
    W = layer.weight.detach().reshape(shape[0], -1)
    if rows is not None:
        if not rows_independent(criterion, pattern):
            raise RecipeError(f"criterion {criterion!r} does not prune rows independently")
        W = W[rows[0]:rows[1]]
        shape = (W.shape[0], *shape[1:])
    if criterion != "magnitude" and moments is None:
        raise RecipeError(f"criterion {criterion!r} needs the layer's input moments")
    new = None
    if criterion == "magnitude":
        score = W.abs().to(torch.float64)
        score[W == 0] = -1.0
        keep = select_keep(score, p, pattern, per_row=pattern is not None)
    elif criterion == "wanda":
        keep = wanda_keep(W, moments, p, pattern)
    else:
        new, keep = sparsegpt_prune(W, moments, p, pattern, damp, device=device)
    keep = (keep & (W != 0)).reshape(shape)
    return keep, None if new is None else new.reshape(shape)


def rows_independent(criterion: str, pattern: tuple[int, int] | None) -> bool:
    """Whether each output row's keep-mask depends on that row alone: Wanda, and
    magnitude with an N:M pattern (SparseGPT spreads a block's count over all rows)."""
    return criterion == "wanda" or (criterion == "magnitude" and pattern is not None)


@torch.no_grad()
def prune_apply_(layer: nn.Module, keep: torch.Tensor, new: torch.Tensor | None) -> None:
    """Give ``layer`` the result of :func:`prune_solve`: its mask (a ``Masked``
    parametrization, or intersected with the one it has) and new weights if any."""
    con = constraint_of(layer)
    target = layer.weight if con is None else layer.parametrizations.weight.original
    if new is not None:
        target.copy_(new.to(target.dtype))
    if con is None:
        parametrize.register_parametrization(layer, "weight", Masked(keep))
    else:
        con.mask &= keep


@torch.no_grad()
def prune_layer_(layer: nn.Module, p: float, criterion: str = "magnitude",
                 pattern: tuple[int, int] | None = None, moments: torch.Tensor | None = None,
                 damp: float = 0.1, device: str | torch.device | None = None) -> torch.Tensor:
    """Prune one ``nn.Linear``/``nn.Conv2d`` in place by ``criterion`` (``magnitude``,
    ``wanda`` or ``sparsegpt``; the last two need the layer's input ``moments``) to
    ``p`` percent or an N:M ``pattern`` along its ``(out, in*kh*kw)`` view. The layer
    gets (or intersects) a ``Masked`` parametrization; SparseGPT also rewrites the kept
    weights (its solve on ``device``, ``None``: the weight's). Returns the keep-mask in
    the weight's shape."""
    keep, new = prune_solve(layer, p, criterion, pattern, moments, damp, device)
    prune_apply_(layer, keep, new)
    return keep
