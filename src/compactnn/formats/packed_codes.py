"""``packed_codes``: a matrix of at most 256 distinct values as a codebook and one
fixed-width code per entry, rows byte-aligned: the layout of
``compactnn.zoo.transformer.PackedEmbedding`` (MiniLM's shared word embeddings), whose
``check_state()`` is this format's ``check()``.

Byte layout (attribute: none besides ``shape`` ``(m, n)``):

- ``codebook`` float32 ``(K,)``, K <= 256: the distinct values by bit pattern, most
  frequent first (``compactnn.coding.frequency_codebook``);
- ``codes`` uint8 ``(m, ceil(n / 8) * bits)``, ``bits = max(ceil(log2 K), 1)``: row ``r``
  is the bit stream of its ``n`` codes, ``bits`` bits each, most significant bit first,
  zero-padded to a multiple of 8 codes (so every 8 codes fill exactly ``bits`` bytes).

``check()`` refuses a codebook that is not finite float32 of distinct bit patterns,
codes of another dtype or shape, any code ``>= K`` and any non-zero padding code, so a
lookup can never index outside the codebook. Products decode a block of rows at a time
and multiply it densely (the format exists for row lookups; its products are there for
the shared contract).

Contract extensions (``CompactMatrix``): ``max_values = 256``: ``from_dense`` raises
``FormatError`` for a matrix with more distinct values (the conformance suite expects
that refusal); ``automatic = False``: registered (``formats.get``, files, the
conformance suite) but not among ``formats.available()``, the candidates of the
conversion policies.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import FormatError, as_dense_input, require_finite
from compactnn.formats.registry import register

__all__ = ["PackedCodes", "code_bits"]

_ROWS = 256  # rows decoded per product step


def code_bits(num_values: int) -> int:
    """Bits per code for a codebook of ``num_values`` entries (at least 1)."""
    return max(max(int(num_values) - 1, 0).bit_length(), 1)


def _unpack(codes: np.ndarray, bits: int) -> np.ndarray:
    """The codes (padding included) of packed rows ``codes`` as uint16 ``(rows, 8k)``."""
    if bits == 8:
        return codes.astype(np.uint16)
    b = np.unpackbits(codes, axis=1).reshape(codes.shape[0], 8 * codes.shape[1] // bits, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint16)
    return (b.astype(np.uint16) * weights).sum(axis=2, dtype=np.uint16)


@register
class PackedCodes(CompactMatrix):
    """Codebook (K <= 256 values) + one ``ceil(log2 K)``-bit code per entry."""

    format_id = "packed_codes"
    version = 1
    arrays = ("codebook", "codes")
    attrs = ()
    automatic: ClassVar[bool] = False  # a lookup table: conversion policies skip it
    max_values: ClassVar[int | None] = 256

    @property
    def bits(self) -> int:
        """Bits per code."""
        return code_bits(self.codebook.shape[0])

    @classmethod
    def from_dense(cls, W: np.ndarray) -> PackedCodes:
        from compactnn.coding import frequency_codebook

        W = as_dense_input(W)
        m, n = W.shape
        omega, sym, _ = frequency_codebook(W)
        if omega.size > cls.max_values:
            raise FormatError(f"packed_codes: {omega.size} distinct values, at most "
                              f"{cls.max_values} fit")
        bits = code_bits(omega.size)
        codes = np.zeros((m, -(-n // 8) * 8), np.uint8)
        codes[:, :n] = np.asarray(sym, np.uint8).reshape(m, n)
        stream = np.unpackbits(codes[..., None], axis=-1)[..., 8 - bits:]
        packed = np.packbits(stream.reshape(m, codes.shape[1] * bits), axis=1)
        return cls((m, n), codebook=np.ascontiguousarray(omega, np.float32),
                   codes=np.ascontiguousarray(packed))

    def _rows(self, r0: int, r1: int) -> np.ndarray:
        idx = _unpack(self.codes[r0:r1], self.bits)[:, :self.shape[1]]
        return self.codebook[idx]

    def to_dense(self) -> np.ndarray:
        m, n = self.shape
        if m * n == 0:
            return np.zeros((m, n), np.float32)
        return np.ascontiguousarray(self._rows(0, m), dtype=np.float32)

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        for r0 in range(0, self.shape[0], _ROWS):
            r1 = min(r0 + _ROWS, self.shape[0])
            y[r0:r1] = self._rows(r0, r1) @ x if self.shape[1] else 0.0

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        for r0 in range(0, self.shape[0], _ROWS):
            r1 = min(r0 + _ROWS, self.shape[0])
            Y[r0:r1] = self._rows(r0, r1) @ X if self.shape[1] else 0.0

    def _multi_dim_arrays(self) -> tuple[str, ...]:
        return ("codes",)

    def _check(self) -> None:
        fid, (m, n) = self.format_id, self.shape
        cb, codes = self.codebook, self.codes
        require_finite(fid, "codebook", cb)
        K = cb.shape[0]
        if K > self.max_values or (K == 0 and m * n):
            raise FormatError(f"{fid}: codebook holds {K} values (1..{self.max_values})")
        if np.unique(cb.view(np.uint32)).size != K:
            raise FormatError(f"{fid}: codebook repeats a value (by bit pattern)")
        want = (m, -(-n // 8) * self.bits)
        if codes.dtype != np.uint8 or codes.shape != want:
            raise FormatError(f"{fid}: codes must be uint8 {list(want)}, got {codes.dtype} "
                              f"{list(codes.shape)}")
        for r0 in range(0, m, 4096):
            idx = _unpack(codes[r0:r0 + 4096], self.bits)
            top = int(idx[:, :n].max()) if idx[:, :n].size else 0
            if top >= max(K, 1):
                raise FormatError(f"{fid}: code {top} is out of range for {K} values "
                                  f"(rows {r0}..{r0 + idx.shape[0] - 1})")
            if idx.shape[1] > n and bool(idx[:, n:].any()):
                raise FormatError(f"{fid}: padding codes are not 0")

    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        c = Cost(adds=m * n, mults=m * n)
        c.read("codes", self.codes.size, self.codes)
        c.read("codebook", m * n, self.codebook)
        c.read("x", m * n, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)
