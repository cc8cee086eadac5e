"""Hypothesis strategies for low-entropy float32 matrices."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SPECIAL = np.array(
    [0.0, -0.0, 1.0, -1.0, 0.5, 3.4e38, -3.4e38, 1e-45, -1e-45, 1.1754944e-38], np.float32
)


@st.composite
def low_entropy(draw, max_rows: int = 40, max_cols: int = 40, max_values: int = 300,
                moderate: bool = False) -> np.ndarray:
    """A pruned-and-shared-looking matrix: ``k`` distinct values with a skewed
    distribution, a fill value (usually 0, sometimes -0.0 or non-zero) at a drawn
    sparsity. ``moderate`` keeps magnitudes in [1e-3, 1e3] so products cannot overflow."""
    m = draw(st.integers(0, max_rows))
    n = draw(st.integers(0, max_cols))
    k = draw(st.integers(1, max_values))
    sparsity = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]) | st.floats(0, 1))
    seed = draw(st.integers(0, 2**32 - 1))
    fills = [0.0, -0.0, 0.5, -3.25] if moderate else [0.0, -0.0, 0.5, -3.25, 1e-45]
    fill = draw(st.sampled_from(fills))
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(k) * 10 ** rng.uniform(-3, 3 if moderate else 30, k))
    if moderate:
        pool = np.clip(np.abs(pool), 1e-3, 1e3) * np.sign(pool + 0.5)
    pool = pool.astype(np.float32)
    if not moderate and k > 4:
        pool[: min(k, SPECIAL.size) // 2] = SPECIAL[: min(k, SPECIAL.size) // 2]
    p = 1.0 / np.arange(1, k + 1) ** draw(st.floats(0, 2))
    W = pool[rng.choice(k, size=(m, n), p=p / p.sum())]
    W[rng.random((m, n)) < sparsity] = np.float32(fill)
    return np.ascontiguousarray(W, dtype=np.float32)


def arbitrary(max_side: int = 24) -> st.SearchStrategy[np.ndarray]:
    """Any finite float32 matrix, element by element (denormals, -0.0, extremes)."""
    return hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=max_side),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    )
