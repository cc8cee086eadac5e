"""Steps of the sliced codebook layout (``csrc/sliced.c``) for ``cost()``.

The native csr/cer/cser kernel objects build that layout at load on AVX-512 CPUs when
the stored entries take at most 32 values and it pads them at most ``MAX_PAD`` times
(``csrc/py_sparse.c``, the same rule); batch-1 products at the AVX-512 level then run
one step (16 slots, one per row of a 16-row slice, all in one 32-column block) per
masked FMA. tests/kernels/test_sparse.py checks these counts against the kernels'.
"""

from __future__ import annotations

import numpy as np

ROWS, COLS, VALUES = 16, 32, 32
MAX_PAD = {"csr": 3.5, "grouped": 8.0}  # SLICED_MAX_PAD_CSR / _GROUPED


def sliced_steps(row_entries: np.ndarray, cols: np.ndarray, values: int, m: int, n: int,
                 kind: str) -> int:
    """Steps of the layout of entries with columns ``cols`` (row by row, ``row_entries``
    of them in each of the ``m`` rows) taking ``values`` distinct values, or 0 when the
    kernels do not build it (``kind``: ``"csr"`` or ``"grouped"``)."""
    nnz = int(cols.shape[0])
    if values > VALUES or nnz == 0:
        return 0
    rows = np.repeat(np.arange(m, dtype=np.int64), row_entries.astype(np.int64))
    nb = -(-n // COLS)
    key = (rows // ROWS * nb + cols.astype(np.int64) // COLS) * ROWS + rows % ROWS
    counts = np.bincount(key, minlength=-(-m // ROWS) * nb * ROWS).reshape(-1, ROWS)
    steps = int(counts.max(axis=1).sum())
    return steps if ROWS * steps <= MAX_PAD[kind] * nnz else 0
