"""The bit-stream layout every coded format shares: codes MSB-first in uint32 words
(bit order and the readers: :mod:`compactnn.kernels.bitpack`), followed by padding so
that a 64-bit window starting at any position up to the end stays inside the array.

>>> stream_words(0), stream_words(31), stream_words(32)
(2, 2, 3)
"""

from __future__ import annotations

import numpy as np

__all__ = ["stream_words", "padding_is_zero", "words_touched"]


def stream_words(total_bits: int) -> int:
    """Words of a stream of ``total_bits``: the word holding bit ``total_bits`` (the
    first position past the data) is followed by one padding word, so a 64-bit window
    starting at any position ``p <= total_bits`` stays inside the array."""
    return int(total_bits) // 32 + 2


def padding_is_zero(words: np.ndarray, total_bits: int) -> bool:
    """Whether every bit after the first ``total_bits`` of ``words`` (exactly
    ``stream_words(total_bits)`` long) is zero."""
    tail = int(total_bits) % 32
    last = int(words[-2]) & ((1 << (32 - tail)) - 1) if tail else int(words[-2])
    return last == 0 and int(words[-1]) == 0


def words_touched(starts: np.ndarray, ends: np.ndarray) -> int:
    """Words a row-by-row decoder reads: per row, from the word holding its first bit
    through the word after the one holding its last bit (2 words for a row of
    zero-length codes)."""
    s = starts.astype(np.int64)
    last = np.maximum(ends.astype(np.int64) - 1, s)
    return int(((last >> 5) + 2 - (s >> 5)).sum())
