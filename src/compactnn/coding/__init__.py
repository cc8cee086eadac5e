"""Entropy tools: frequency tables, codebooks, Huffman codes, entropy bounds."""

from compactnn.coding.codebook import entropy_bits, frequency_codebook, symbol_counts
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
    "entropy_bits",
    "frequency_codebook",
    "huffman_lengths",
    "kraft_sum",
    "length_counts",
    "symbol_counts",
]
