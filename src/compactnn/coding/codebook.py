"""Frequency-ordered codebooks and empirical entropy of matrix entries.

Values are compared by their float32 bit patterns, so ``-0.0`` and ``0.0`` are
distinct symbols and every representation built on a codebook is bit-exact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frequency_codebook", "entropy_bits", "symbol_counts"]


def symbol_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct float32 values of ``values`` (by bit pattern), each entry's index into
    them, and their counts. The distinct values come in ascending bit-pattern order."""
    bits = np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint32)
    if bits.size == 0:
        return np.empty(0, np.float32), np.empty(0, np.int64), np.empty(0, np.int64)
    uniq = np.unique(bits)
    inv = np.searchsorted(uniq, bits)
    counts = np.bincount(inv, minlength=uniq.size)
    return uniq.view(np.float32), inv, counts


def frequency_codebook(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codebook ``omega`` sorted by decreasing frequency (ties: ascending value, then bit
    pattern), the code (index into ``omega``) of every entry in C order, and the counts
    of each codebook entry.

    >>> omega, codes, counts = frequency_codebook(np.array([0, 2, 0, 1], np.float32))
    >>> omega.tolist(), codes.tolist(), counts.tolist()
    ([0.0, 1.0, 2.0], [0, 2, 0, 1], [2, 1, 1])
    """
    uniq, inv, counts = symbol_counts(values)
    if uniq.size == 0:
        return uniq, inv, counts
    order = np.lexsort((uniq.view(np.uint32), uniq, -counts))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return uniq[order], rank[inv], counts[order]


def entropy_bits(W: np.ndarray) -> float:
    """Empirical entropy of the entries of ``W`` times their count, in bits: the lower
    bound for coding the entries as i.i.d. symbols (values by float32 bit pattern)."""
    _, _, counts = symbol_counts(np.asarray(W, dtype=np.float32))
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts / total
    return float(-(counts * np.log2(p)).sum())
