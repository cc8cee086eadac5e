"""``dense``: the float32 matrix itself (the hub every format converts through).

Byte layout: one array ``data``, float32, shape (m, n), row-major.
"""

from __future__ import annotations

import numpy as np

from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import FormatError, as_dense_input, require_finite
from compactnn.formats.registry import register


@register
class Dense(CompactMatrix):
    """Dense float32 storage; products use numpy (BLAS)."""

    format_id = "dense"
    arrays = ("data",)

    @classmethod
    def from_dense(cls, W: np.ndarray) -> Dense:
        W = as_dense_input(W)
        return cls(W.shape, data=W.copy())

    def to_dense(self) -> np.ndarray:
        return self.data.copy()

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        np.matmul(self.data, x, out=y)

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        np.matmul(self.data, X, out=Y)

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        np.matmul(X, self.data.T, out=Y)

    def _multi_dim_arrays(self) -> tuple[str, ...]:
        return ("data",)

    def _check(self) -> None:
        d = self.data
        if d.ndim != 2 or d.shape != self.shape:
            raise FormatError(f"dense: data has shape {d.shape}, expected {self.shape}")
        require_finite("dense", "data", d.reshape(-1))

    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        c = Cost(adds=m * n, mults=m * n)
        c.read("data", m * n, self.data)
        c.read("x", m * n, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)
