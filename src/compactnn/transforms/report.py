"""Reports: per-layer weight statistics (``LayerStats``) and ``CompressionReport``.

Per compressed layer: its sparsity, number of distinct values and entropy
(``compactnn.coding.entropy_bits`` of the weight in its ``(out, in*kh*kw)`` view; biases
are not included), as the layer computes with it now.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from compactnn.coding import distinct_and_entropy
from compactnn.transforms import parallel
from compactnn.transforms.prune import kind_of, layers_of

__all__ = ["LayerStats", "CompressionReport", "layer_report"]


@dataclass(frozen=True)
class LayerStats:
    """Statistics of one layer's weight (``(out, in*kh*kw)`` view, biases excluded)."""

    name: str
    kind: str
    shape: tuple[int, int]
    weights: int
    nonzero: int
    distinct: int
    entropy_bits: float

    @property
    def sparsity(self) -> float:
        return 1 - self.nonzero / self.weights if self.weights else 0.0

    @property
    def bits_per_weight(self) -> float:
        return self.entropy_bits / self.weights if self.weights else 0.0


@dataclass(frozen=True)
class CompressionReport:
    """Per-layer statistics plus, when ``compress_`` had ``val_data``, the validation
    metrics after each step (``history``: ``(step description, metrics)`` pairs)."""

    layers: tuple[LayerStats, ...]
    history: tuple[tuple[str, dict[str, float]], ...] = ()

    @property
    def weights(self) -> int:
        return sum(s.weights for s in self.layers)

    @property
    def sparsity(self) -> float:
        return 1 - sum(s.nonzero for s in self.layers) / self.weights if self.weights else 0.0

    @property
    def entropy_bits(self) -> float:
        """Sum of the per-layer entropies (each layer coded with its own statistics)."""
        return sum(s.entropy_bits for s in self.layers)

    @property
    def bits_per_weight(self) -> float:
        return self.entropy_bits / self.weights if self.weights else 0.0

    def table(self) -> str:
        """A plain-text table, one row per layer plus the total."""
        rows = [("layer", "kind", "shape", "sparsity", "distinct", "bits/weight", "x vs fp32")]
        for s in self.layers:
            rows.append((s.name, s.kind, f"{s.shape[0]}x{s.shape[1]}", f"{s.sparsity:.2%}",
                         str(s.distinct), f"{s.bits_per_weight:.3f}", _ratio(s.bits_per_weight)))
        rows.append(("total", "", str(self.weights), f"{self.sparsity:.2%}", "",
                     f"{self.bits_per_weight:.3f}", _ratio(self.bits_per_weight)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        for desc, metrics in self.history:
            lines.append(f"after {desc}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        return "\n".join(lines)

    __str__ = table


def _ratio(bits: float) -> str:
    return f"{32 / bits:.1f}" if bits > 0 else "inf"


@torch.no_grad()
def layer_report(model: nn.Module, names: Iterable[str] | None = None) -> CompressionReport:
    """Sparsity, distinct values and entropy of the weights of ``model`` 's Linear/Conv2d
    layers (all of them), or of the modules ``names`` (any with a ``weight``, such as a
    ``PermutedLinear``), as the layers compute with them now."""
    layers = layers_of(model) if names is None else {n: model.get_submodule(n) for n in names}
    tasks = [(float(layer.weight.numel()), functools.partial(_stats, name, layer))
             for name, layer in layers.items()]
    return CompressionReport(tuple(parallel.current().map(tasks)))  # split across ranks


def _stats(name: str, layer: nn.Module) -> LayerStats:
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1).to(torch.float32).numpy()
    distinct, bits = distinct_and_entropy(w)
    return LayerStats(name, kind_of(layer), (w.shape[0], w.shape[1]), int(w.size),
                      int(np.count_nonzero(w)), distinct, bits + 0.0)  # no -0.0

