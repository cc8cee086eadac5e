"""Entropy tools: frequency tables, codebooks, Huffman codes, entropy bounds."""

from compactnn.coding.codebook import (
    distinct,
    distinct_and_entropy,
    entropy_bits,
    frequency_codebook,
    symbol_counts,
)
from compactnn.coding.huffman import (
    build_code,
    canonical_codes,
    huffman_lengths,
    kraft_sum,
    length_counts,
)

__all__ = [
    "build_code",
    "canonical_codes",
    "distinct",
    "distinct_and_entropy",
    "entropy_bits",
    "frequency_codebook",
    "huffman_lengths",
    "kraft_sum",
    "length_counts",
    "symbol_counts",
]
