"""``share_layers_``: a 1-D quantizer applied to layers (one codebook per layer, or one
per kind), the assignments nearest-value or chosen by GPTQ on the layers' input moments;
each codebook fit and each GPTQ solve is a ``transforms.parallel`` task."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from compactnn.transforms import parallel
from compactnn.transforms.prune import constraint_of, kind_of
from compactnn.transforms.quantize import Quantized
from compactnn.transforms.shared import SharedWeights

__all__ = ["share_layers_"]


@torch.no_grad()
def share_layers_(layers: Mapping[str, nn.Module], quantizer: Callable[[np.ndarray], Quantized],
                   shared: bool = False,
                   moments: Callable[[str], torch.Tensor] | None = None,
                   damp: float = 0.1, device=None) -> dict[str, nn.Parameter]:
    """Replace the weights of ``layers`` by shared values, in place (GPTQ solves on
    ``device``, ``None``: the weights').

    Args:
        layers: name -> ``nn.Linear``/``nn.Conv2d`` (plain, pruned or already shared).
        quantizer: a 1-D quantizer, e.g. ``functools.partial(kmeans_1d, k=16)``; it gets
            the non-zero weights (float64) and must return a ``Quantized``.
        shared: one codebook for all layers of a kind (linear / conv) instead of one
            per layer.
        moments: if given, ``moments(name)`` returns the input second moments of that
            layer (``compactnn.transforms.calibrate.input_moments``), asked for each
            layer in turn *after* the layers before it are shared; the assignments to
            the quantizer's codebook are then chosen by GPTQ error compensation
            (``calibrate.gptq_assign`` with ``damp``) instead of the quantizer's own;
            0 is among the values when the quantizer itself rounded some non-zero
            weights to 0 (UQ). The codebook is kept whole (a value no weight uses
            stays in it).

    Returns:
        The codebook parameter of each layer (the same object for a shared group).
    """
    from compactnn.transforms.calibrate import gptq_assign, sibling_groups

    groups: dict[str, list[str]] = {}
    for name, layer in layers.items():
        groups.setdefault(kind_of(layer) if shared else name, []).append(name)
    par = parallel.current()
    fits = par.map([(float(sum(layers[n].weight.numel() for n in names)),
                     functools.partial(_fit, [layers[n] for n in names], quantizer))
                    for names in groups.values()])
    found = {}
    for names, (codebook, parts, rounds_to_zero) in zip(groups.values(), fits, strict=True):
        book = nn.Parameter(torch.from_numpy(codebook.astype(np.float32)))
        for n, part in zip(names, parts, strict=True):
            found[n] = (book, codebook, part, rounds_to_zero)
    fits = parts = part = None  # the found tuples hold what is still needed
    order = [n for names in groups.values() for n in names]
    calibrated = [n for n in order if moments is not None and found[n][1].size]
    for n in calibrated:  # GPTQ chooses these assignments: the nearest ones go now
        found[n] = (found[n][0], found[n][1], None, found[n][3])
    plain = iter([n for n in order if n not in calibrated])
    pending = next(plain, None)
    for group, hs in sibling_groups(calibrated, moments):
        while pending is not None and order.index(pending) < order.index(group[0]):
            _share_(layers[pending], found[pending][0], found[pending][2])
            pending = next(plain, None)
        assigns = par.map([(float(layers[n].weight.numel() * layers[n].weight[0].numel()),
                            functools.partial(
                                gptq_assign, layers[n].weight.detach().reshape(
                                    layers[n].weight.shape[0], -1), h, found[n][1], damp,
                                zero=found[n][3], device=device))
                           for n, h in zip(group, hs, strict=True)])
        for n, assign in zip(group, assigns, strict=True):
            _share_(layers[n], found[n][0], torch.from_numpy(assign))
    while pending is not None:
        _share_(layers[pending], found[pending][0], found[pending][2])
        pending = next(plain, None)
    return {n: found[n][0] for n in order}


def _fit(group: list[nn.Module], quantizer: Callable[[np.ndarray], Quantized]
         ) -> tuple[np.ndarray, list[torch.Tensor], bool]:
    """One codebook for the non-zero weights of ``group``: ``(codebook, each layer's
    assignment (its weight's shape, -1 for zero, in the smallest integer type), whether
    the quantizer rounds some weights to 0)``; a ``transforms.parallel`` task."""
    weights = [m.weight.detach().to(torch.float32).reshape(-1) for m in group]
    nonzero = [w != 0 for w in weights]
    values = torch.cat([w[nz] for w, nz in zip(weights, nonzero, strict=True)]
                       ).to(torch.float64).numpy()
    del weights  # the layers' dense weights are not needed by the quantizer
    q = quantizer(values)
    del values
    parts = torch.from_numpy(q.assign).split([int(nz.sum()) for nz in nonzero])
    k = q.codebook.size  # assignments in SharedWeights' type (int8 up to 126 values)
    small = torch.int8 if k < 127 else torch.int16 if k < 32767 else torch.int32 \
        if k < 2**31 - 1 else torch.int64
    out = []
    for m, nz, part in zip(group, nonzero, parts, strict=True):
        assign = torch.full(nz.shape, -1, dtype=small)
        assign[nz] = part.to(small)
        out.append(assign.reshape(m.weight.shape))
    return q.codebook, out, bool((q.assign == -1).any())


def _share_(layer: nn.Module, book: nn.Parameter, assign: torch.Tensor) -> None:
    if constraint_of(layer) is not None:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    parametrize.register_parametrization(layer, "weight",
                                         SharedWeights(book, assign.reshape(layer.weight.shape)))
