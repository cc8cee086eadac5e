"""``index_map``: a codebook of the distinct values and a fixed-width code per entry.

Byte layout (little-endian):

* ``omega`` float32 (K,): the distinct entry values (by bit pattern) by decreasing
  frequency (:func:`~compactnn.coding.codebook.frequency_codebook`).
* ``words`` uint32 (``m * n * b // 32 + 2``,): entry ``(r, j)`` is the ``b =
  ceil(log2 K)``-bit index into ``omega`` at bit ``(r * n + j) * b``, MSB-first
  (:mod:`compactnn.kernels.bitpack`), then zero padding to the end of the word after
  the one holding bit ``m * n * b``, so the kernels' bit readers never need a
  bounds check. ``b = 0`` when K == 1 (no bits: every entry is
  ``omega[0]``); ``b`` is derived from K and not stored.

Stored bits = ``32 * (m * n * b // 32 + 2) + 32 * K``.

Products. ``W @ x`` (one column) runs a fused kernel: a bit reader per row decodes
each code and multiplies it at once. ``W @ X`` with ``k >= 2`` columns is tiled: a
tile of ``t`` rows (about 256 kB of float32, :func:`tile_rows`) is decoded into a
scratch buffer (``bitpack.fixed_rows_to_dense`` on one numba thread) and multiplied
by ``X`` with BLAS (``np.matmul``, all its threads), tile by tile, so only one tile
is ever dense and the codes are decoded once per product instead of once per column.
Measured at 1 thread on MiniLM's 384x384 / 1536x384 / 384x1536 matrices with 12
values and 400 columns (``benchmarks/minilm_kernels.py``), this takes 1.1-1.2x the
time of a dense float32 product, against about 3.7x for the fused row-by-row kernel
it replaced (which cannot use BLAS's register blocking). With few columns the decode
dominates: at 64 columns on 4096x4096 it is about 1.6x the dense time.

Native kernels (:mod:`compactnn.kernels.backend`, the default where the extension is
built). At first use the codes are repacked into a runtime layout (never stored): 4-bit
nibbles when K <= 16 (32 codes per 16 bytes), else one byte per code, rows padded to 16
bytes. A product loads 16 codes into 16 int32 lanes and looks them all up with one
register permute (AVX-512 ``vpermps``: the whole 16-value codebook lives in one
register; K <= 32 and K <= 64 use two-register permutes, larger codebooks a gather;
AVX2 uses two 8-entry permutes and a blend). Batch 1 decodes and multiplies in
registers. Batches up to 4 decode 4 rows at a time into a per-thread buffer and take
dot products with every input row. Larger batches transpose the inputs once into
tiles of 16 or 32 tokens and run an MR x T register block per tile (12 x 16 or 6 x 32
on AVX-512: per column k one or two loads, MR broadcasts of decoded weights, MR or
2 MR FMAs) on W rows decoded MR at a time: the codes are decoded once per product
whatever the batch, and measured on MiniLM's shapes this is 1.3-2.2x faster than
torch's MKL product on the dense matrix at 15-500 inputs (1 thread).
The runtime codes cost ``m * ceil(n/32) * 16`` bytes (K <= 16) beside the stored
words; K > 256 stays on the numba kernels.

Cost of ``W @ X`` with ``batch`` columns (:meth:`IndexMap.cost`, of the kernel path
asked for): on the native path the runtime codes are read once in 16-byte loads and
the K codebook values once, whatever the batch; the numba path's fused
kernel counts ``m * n`` adds,
multiplies, ``omega`` reads and ``x`` reads; ``words``: per row, the words from the
one holding its first bit through the word after the one holding its last bit; ``y``:
m writes. A tiled product of ``k`` columns reads the same ``words`` and ``m * n``
``omega`` entries once in all, writes ``m * n`` scratch floats, and BLAS then does
``m * n * k`` multiply-adds reading the scratch tile (cache-resident) and ``X``.
"""

from __future__ import annotations

import numpy as np

from compactnn.coding.codebook import frequency_codebook
from compactnn.coding.streams import stream_words, words_touched
from compactnn.formats._tiles import numba_tiles
from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import FormatError, as_dense_input, require_finite, require_stream
from compactnn.formats.registry import register
from compactnn.kernels import bitpack


def code_bits(n_symbols: int) -> int:
    """Bits per entry for a codebook of ``n_symbols``: ``ceil(log2 K)``, 0 for K <= 1."""
    return max(int(n_symbols) - 1, 0).bit_length()


TILE_FLOATS = 1 << 16
"""Target size of the scratch tile (floats): 256 kB, so it stays in the L2 cache while
BLAS reads it."""


def tile_rows(m: int, n: int) -> int:
    """Rows per tile of the tiled product: about ``TILE_FLOATS / n`` (a multiple of 8,
    at least 8), at most ``m``."""
    return max(1, min(m, max(8, (TILE_FLOATS // max(n, 1)) // 8 * 8)))


@register
class IndexMap(CompactMatrix):
    """Codebook + bit-packed fixed-width indices; products decode in the kernel."""

    format_id = "index_map"
    arrays = ("omega", "words")

    @classmethod
    def from_dense(cls, W: np.ndarray) -> IndexMap:
        W = as_dense_input(W)
        m, n = W.shape
        omega, sym, _ = frequency_codebook(W)
        b = code_bits(omega.size)
        words = np.zeros(stream_words(m * n * b), np.uint32)
        codes = np.arange(max(omega.size, 1), dtype=np.uint32)
        lengths = np.full(codes.size, b, np.uint8)
        bitpack.pack_codes(sym, codes, lengths, np.zeros(1, np.int64), words,
                           np.zeros(1, np.int64))
        return cls(W.shape, omega=omega, words=words)

    @property
    def bits(self) -> int:
        """Bits per entry code."""
        return code_bits(self.omega.shape[0])

    def to_dense(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        if out.size:
            k = self._native()
            if k is not None:
                k.decode_rows(0, self.shape[0], out)
            else:
                bitpack.fixed_rows_to_dense(self.words, self.bits, self.omega, 0, out)
        return out

    def _native(self):
        """The native kernel object (built on first use: the codes repacked into the
        kernels' nibble or byte layout), or None on the numba path or for K > 256."""
        if self.bits > 8:
            return None
        return self._cached_kernel(lambda nat: nat.LutMatrix(
            self.words, self.bits, *self.shape, self.omega))

    def fused_rows(self, batch: int):
        return self._native()

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        k = self._native()
        if k is not None:
            k.rows(x, y, 1, None)
            return
        bitpack.fixed_matvec(self.words, self.bits, self.omega, x, y)

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        if X.shape[1] == 1:
            self._matvec(X[:, 0], Y[:, 0])
            return
        k = self._native()
        if k is not None:  # the kernel takes inputs as rows
            Yt = np.empty((X.shape[1], self.shape[0]), np.float32)
            k.rows(np.ascontiguousarray(X.T), Yt, X.shape[1], None)
            Y[...] = Yt.T
            return
        for r0, tile in self._tiles():
            np.matmul(tile, X, out=Y[r0:r0 + tile.shape[0]])

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        k = self._native()
        if k is not None:
            k.rows(X, Y, X.shape[0], None)
            return
        if X.shape[0] == 1:
            self._matvec(X[0], Y[0])
            return
        for r0, tile in self._tiles():  # a column block of the row-major output
            np.matmul(X, tile.T, out=Y[:, r0:r0 + tile.shape[0]])

    def _tiles(self):
        """Yield ``(first row, decoded rows)`` tile by tile (numba path)."""
        m, n = self.shape
        return numba_tiles(
            lambda r0, nr, out: bitpack.fixed_rows_to_dense(self.words, self.bits,
                                                            self.omega, r0, out),
            self.shape, tile_rows(m, n))

    def _check(self) -> None:
        m, n = self.shape
        require_finite("index_map", "omega", self.omega)
        n_sym = self.omega.shape[0]
        if (m * n > 0) != (n_sym > 0):
            raise FormatError(
                f"index_map: array 'omega' has {n_sym} symbols for a {m}x{n} matrix"
            )
        if self.words.dtype != np.uint32:
            raise FormatError(
                f"index_map: array 'words' has dtype {self.words.dtype}, expected uint32"
            )
        b = self.bits
        require_stream("index_map", "words", self.words, m * n * b)
        if m * n and b:
            top = int(bitpack.fixed_max(self.words, b, m * n, 64))
            if top >= n_sym:
                raise FormatError(
                    f"index_map: array 'words' holds code {top}, out of range [0, {n_sym})"
                )

    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        b = self.bits
        c = Cost(adds=m * n, mults=m * n)
        if backend != "numba" and b <= 8:
            # native kernel: the runtime codes (nibbles when K <= 16, else bytes; rows
            # padded to 16 bytes) are read once in 16-byte loads whatever the batch; the
            # codebook is loaded once into registers and looked up by a register permute
            # (no memory access per entry)
            stride = 16 * -(-n // 32) if self.omega.shape[0] <= 16 else 16 * -(-n // 16)
            nbytes = m * stride
            c.read("codes", nbytes // 16, 128, nbytes)
            c.read("omega", self.omega.shape[0], self.omega)
        else:
            starts = np.arange(m, dtype=np.int64) * n * b
            c.read("words", words_touched(starts, starts + n * b) if n else 0, self.words)
            c.read("omega", m * n, self.omega)
        c.read("x", m * n, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)
