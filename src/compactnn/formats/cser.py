"""``cser``: Compressed Shared Elements Row (Wiedemann, Müller, Samek, IEEE TNNLS 2019).

CER (``formats/cer.py``, which documents the codebook, the product and the cost
counting) without the empty padding groups: each stored group names its value.

Byte layout (index dtypes: the smallest of uint8/16/32/64 that holds the range):

=============  ========  ==========  ===============================================
array          dtype     length      content
=============  ========  ==========  ===============================================
``omega``      float32   K           the original distinct values, most frequent
                                     first (``frequency_codebook``)
``col_idx``    uint      nnz         columns of the entries with code != 0, row by
                                     row, grouped by code in ``omega`` order,
                                     ascending inside a group; dtype holds ``n - 1``
``omega_ptr``  uint      groups + 1  start of each (non-empty) group in ``col_idx``
                                     (last = nnz); dtype holds nnz
``row_ptr``    uint      m + 1       first group of each row (last = groups); dtype
                                     holds groups
``omega_idx``  uint      groups      each group's index into ``omega``, in
                                     ``[1, K)``, strictly increasing inside a row;
                                     dtype holds ``K - 1``
=============  ========  ==========  ===============================================

Storage in bits: ``K*32 + nnz*b_col + (groups+1)*b_ptr + (m+1)*b_row + groups*b_idx``,
with ``groups`` = the number of distinct (row, value) pairs other than ``omega[0]``.
"""

from __future__ import annotations

import numpy as np

from compactnn.formats.cer import GroupedRows, grouped_arrays
from compactnn.formats.checks import FormatError, as_dense_input, require_below, require_len
from compactnn.formats.registry import register

__all__ = ["CSER"]


@register
class CSER(GroupedRows):
    """Compressed Shared Elements Row: codebook + column indices grouped by value per
    row, only non-empty groups, each with its codebook index."""

    format_id = "cser"
    arrays = ("omega", "col_idx", "omega_ptr", "row_ptr", "omega_idx")
    explicit = True
    omega_idx: np.ndarray

    @classmethod
    def from_dense(cls, W: np.ndarray) -> CSER:
        W = as_dense_input(W)
        g = grouped_arrays(W)
        return cls(W.shape, omega=g["omega"], col_idx=g["col_idx"], omega_ptr=g["omega_ptr"],
                   row_ptr=g["row_ptr"], omega_idx=g["omega_idx"])

    def _kernel_idx(self) -> np.ndarray:
        return self.omega_idx

    def _index_bounds(self) -> dict[str, int]:
        return {"col_idx": self.shape[1] - 1, "omega_idx": self.omega.shape[0] - 1}

    def _check_groups(self, K: int) -> None:
        G = self.groups
        idx = self.omega_idx
        require_len("cser", "omega_idx", idx, G)
        require_below("cser", "omega_idx", idx, K)
        if G == 0:
            return
        if (idx == 0).any():
            raise FormatError("cser: array 'omega_idx' stores code 0 (the implicit value)")
        if (self.omega_ptr[1:] <= self.omega_ptr[:-1]).any():
            raise FormatError("cser: array 'omega_ptr' has an empty group")
        first = np.zeros(G, dtype=np.bool_)
        first[self.row_ptr[:-1][self.row_ptr[:-1] < G].astype(np.int64)] = True
        i = idx.astype(np.int64)
        if (i[1:] <= i[:-1])[~first[1:]].any():
            raise FormatError("cser: array 'omega_idx' is not strictly increasing inside a row")
