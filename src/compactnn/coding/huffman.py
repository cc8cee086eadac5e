"""Canonical, length-limited Huffman codes: construction, encoding, decoding tables.

A code is stored as ``(omega, length_counts)``: the symbols (float32 values) in
canonical order and ``length_counts[l-1]``, the number of codewords of length ``l``
for ``l = 1..Lmax`` (``Lmax = len(length_counts) <= 32``). The first
``length_counts[0]`` symbols have length 1, the next ``length_counts[1]`` length 2, and
so on; codewords are assigned in canonical order (``first[l+1] = (first[l] +
length_counts[l-1]) << 1``), so a code is fully described by these two arrays.

Conventions:

* ``K == 0`` (no symbols): ``length_counts`` is empty and nothing is coded.
* ``K == 1``: the **zero-length code**. ``length_counts`` is empty, the single symbol
  costs 0 bits, and a decoder emits it without consuming input. This is what Huffman's
  construction gives (entropy 0) and keeps a constant matrix at 0 stream bits.
* ``K >= 2``: lengths come from Huffman's algorithm (Moffat and Katajainen's O(K)
  in-place version on the sorted counts, ``kernels.huffman.code_lengths_sorted``:
  ``heapq`` took 20 s for a million symbols, and an unquantized matrix has up to
  ``m * n``); if the longest
  exceeds ``max_len`` (32 by default, so a decoder can peek 32 bits), the length
  histogram is rebalanced with JPEG's ``adjust_bits`` (ITU T.81 Annex K.3), which keeps
  the Kraft sum at exactly 1. Sorted lengths are then given to the symbols in order of
  decreasing count, so lengths are non-decreasing in canonical order.

Bit streams are MSB-first in uint32 words (see :mod:`compactnn.kernels.bitpack`);
:func:`compactnn.coding.streams.stream_words` gives the word count including the
padding that lets a decoder read a 64-bit window at any position up to the end of the
stream.

Decoding tables (:func:`decode_tables`) are derived from the stored code at load time
and are never stored: a first-level lookup table of ``2**T`` entries (``T =
min(Lmax, lut_bits)``) giving length and value of every code of at most ``T`` bits,
and per-length left-justified limits for the canonical search of longer codes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import numpy as np

from compactnn.coding.codebook import frequency_codebook
from compactnn.coding.streams import stream_words
from compactnn.kernels import bitpack
from compactnn.kernels.huffman import (
    ESCAPE,  # lut_len marker: longer code or unused
    code_lengths_sorted,
)

__all__ = [
    "MAX_CODE_LENGTH",
    "ESCAPE",
    "DecodeTables",
    "huffman_lengths",
    "length_counts",
    "canonical_codes",
    "kraft_sum",
    "build_code",
    "encode",
    "decode_tables",
]

MAX_CODE_LENGTH = 32
"""Longest codeword: a decoder peeks 32 bits."""



def huffman_lengths(counts: np.ndarray, max_len: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Length-limited Huffman code lengths (uint8) for symbols with ``counts``.

    Lengths are non-increasing in count (ties: lower symbol index first), so the
    most frequent symbols get the shortest codes; the result is deterministic.

    >>> huffman_lengths(np.array([5, 2, 1, 1])).tolist()
    [1, 2, 3, 3]
    >>> huffman_lengths(np.array([7])).tolist()
    [0]
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts.size and (counts.dtype.kind not in "iu" or counts.min() < 1)):
        raise ValueError("counts must be a 1-D array of positive integers")
    k = counts.size
    if not 1 <= max_len <= MAX_CODE_LENGTH:
        raise ValueError(f"max_len must be in [1, {MAX_CODE_LENGTH}], got {max_len}")
    if k > 2**max_len:
        raise ValueError(f"{k} symbols do not fit in codes of at most {max_len} bits")
    if k <= 1:
        return np.zeros(k, np.uint8)
    counts = counts.astype(np.int64)
    ordered = bool(np.all(counts[:-1] >= counts[1:]))  # already by decreasing count
    depth = counts[::-1].copy() if ordered else np.sort(counts)
    code_lengths_sorted(depth)
    bits = np.bincount(depth, minlength=max_len + 1).astype(np.int64)
    # JPEG Annex K.3 adjust_bits: move pairs of deepest leaves up until every length
    # is <= max_len; each step keeps the Kraft sum at exactly 1.
    for i in range(bits.size - 1, max_len, -1):
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    sorted_lengths = np.repeat(np.arange(bits.size, dtype=np.uint8), bits)
    if ordered:
        return sorted_lengths
    lengths = np.empty(k, np.uint8)
    lengths[np.argsort(-counts, kind="stable")] = sorted_lengths
    return lengths


def length_counts(lengths: np.ndarray) -> np.ndarray:
    """Number of codes of each length ``1..Lmax`` (int64); empty for 0 or 1 symbols
    (the zero-length code)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0 or lengths.max() == 0:
        return np.zeros(0, np.int64)
    return np.bincount(lengths, minlength=int(lengths.max()) + 1)[1:].astype(np.int64)


def kraft_sum(counts_per_length: np.ndarray) -> Fraction:
    """Exact Kraft sum ``sum_l count_l * 2**-l`` of a length histogram (0 for the
    empty histogram of the zero-length code).

    >>> kraft_sum(np.array([1, 1, 2]))
    Fraction(1, 1)
    """
    return sum(
        (Fraction(int(c), 2 ** (i + 1)) for i, c in enumerate(counts_per_length)), Fraction(0)
    )


def canonical_codes(counts_per_length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codewords (uint32, right-aligned) and lengths (uint8) of the symbols in
    canonical order for a valid length histogram (Kraft sum <= 1).

    >>> c, l = canonical_codes(np.array([1, 1, 2]))
    >>> [format(int(v), f"0{n}b") for v, n in zip(c, l)]
    ['0', '10', '110', '111']
    """
    lc = np.asarray(counts_per_length, dtype=np.int64)
    lengths = np.repeat(np.arange(1, lc.size + 1, dtype=np.uint8), lc)
    first = np.zeros(lc.size + 1, np.int64)  # first[l]: first code of length l
    code = 0
    for ln in range(1, lc.size + 1):
        first[ln] = code
        code = (code + int(lc[ln - 1])) << 1
    offset = np.concatenate(([0], np.cumsum(lc)))  # offset[l-1]: first symbol of length l
    sym = np.arange(lengths.size, dtype=np.int64)
    lens = lengths.astype(np.int64)
    codes = first[lens] + sym - offset[lens - 1] if sym.size else sym
    return codes.astype(np.uint32), lengths


def build_code(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Canonical Huffman code of the entries of ``values``.

    Returns ``omega`` (float32 symbols in canonical order, which is the frequency
    order of :func:`~compactnn.coding.codebook.frequency_codebook`), ``length_counts``
    (int64), the symbol index of every entry (int64, C order) and the count of each
    symbol.
    """
    omega, sym, counts = frequency_codebook(values)
    lengths = huffman_lengths(counts)
    return omega, length_counts(lengths), sym, counts


def encode(
    sym: np.ndarray, counts_per_length: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pack the codewords of ``sym`` (symbol indices in canonical order) MSB-first.

    ``starts`` (int64, ``(m+1,)``) splits ``sym`` into rows. Returns ``words``
    (uint32, zero padding, :func:`stream_words` long) and ``row_bits`` (int64
    ``(m+1,)``, the bit offset of each row's first code; ``row_bits[-1]`` is the total).
    """
    codes, lengths = canonical_codes(counts_per_length)
    if lengths.size == 0:  # zero-length code (or no symbols): nothing to write
        codes, lengths = np.zeros(1, np.uint32), np.zeros(1, np.uint8)
    sym = np.ascontiguousarray(sym, dtype=np.int64)
    total = int(np.bincount(sym, minlength=lengths.size) @ lengths.astype(np.int64))
    words = np.zeros(stream_words(total), np.uint32)
    row_bits = np.zeros(len(starts), np.int64)
    bitpack.pack_codes(sym, codes, lengths, np.ascontiguousarray(starts, np.int64), words, row_bits)
    return words, row_bits


class DecodeTables(NamedTuple):
    """Runtime decoding cache of a canonical code (derived, never stored).

    ``lut_len``/``lut_val`` (``2**lut_bits`` entries): length and value of the code
    that the next ``lut_bits`` stream bits start, or ``ESCAPE``; ``limit[l]``
    (uint64, 34 entries): exclusive upper bound of the left-justified 32-bit peeks
    whose code has at most ``l`` bits (``2**32`` past ``lmax``); ``base[l]``: symbol
    index = ``(peek >> (32 - l)) - base[l]``.
    """

    lut_bits: int
    lmax: int
    lut_len: np.ndarray
    lut_val: np.ndarray
    limit: np.ndarray
    base: np.ndarray


def decode_tables(
    omega: np.ndarray, counts_per_length: np.ndarray, lut_bits: int = 10
) -> DecodeTables:
    """Build the decoding cache for the code ``(omega, counts_per_length)`` (assumed
    valid: Kraft sum <= 1, ``sum(counts) == len(omega)`` or the zero-length code)."""
    lc = np.asarray(counts_per_length, dtype=np.int64)
    lmax = int(lc.size)
    t = min(lmax, lut_bits)
    limit = np.full(MAX_CODE_LENGTH + 2, 1 << 32, np.uint64)
    base = np.zeros(MAX_CODE_LENGTH + 2, np.int64)
    code = 0
    offset = 0
    for ln in range(1, lmax + 1):
        c = int(lc[ln - 1])
        limit[ln] = (code + c) << (32 - ln)
        base[ln] = code - offset
        offset += c
        code = (code + c) << 1
    lut_len = np.full(1 << t, ESCAPE, np.uint8)
    lut_val = np.zeros(1 << t, np.float32)
    if lmax == 0:  # zero-length code: every lookup yields omega[0] and consumes nothing
        lut_len[:] = 0
        lut_val[:] = omega[0] if omega.size else 0
    else:
        codes, lengths = canonical_codes(lc)
        short = lengths <= t
        span = 1 << (t - lengths[short].astype(np.int64))  # LUT entries per short code
        start = codes[short].astype(np.int64) << (t - lengths[short].astype(np.int64))
        idx = np.repeat(start - np.cumsum(span) + span, span) + np.arange(int(span.sum()))
        lut_len[idx] = np.repeat(lengths[short], span)
        lut_val[idx] = np.repeat(omega[: int(short.sum())], span)
    return DecodeTables(t, lmax, lut_len, lut_val, limit, base)
