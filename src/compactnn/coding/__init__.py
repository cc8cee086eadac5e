"""Entropy tools: frequency tables, codebooks, Huffman codes, entropy bounds."""

from compactnn.coding.codebook import entropy_bits, frequency_codebook, symbol_counts

__all__ = ["entropy_bits", "frequency_codebook", "symbol_counts"]
