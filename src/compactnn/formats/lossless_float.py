"""``lossless_float``: unquantized float32 (and bfloat16) weights, exponents entropy-coded.

Byte grouping in the spirit of ZipNN and DFloat11: the bits of a float32 entry
(sign ``s``, exponent ``e``, 8 bits, mantissa ``f``, 23 bits) are split into a *head*,
the exponent and the top ``h`` mantissa bits (``head_bits``), which is Huffman-coded
(trained weights use a few dozen exponents: about 2.7 bits instead of 8), and a
*tail*, the sign and the other mantissa bits, stored as they are. ``zero_bits`` (``z``)
low mantissa bits that are zero in every entry are not stored at all: a bfloat16
matrix, converted to float32 exactly (``tensor.float()``), has ``z >= 16``, so it is
stored in ``1 + 7 - h`` tail bits plus its head code per entry and decodes to the same
float32 matrix, whose ``.bfloat16()`` is the original bit for bit (no dtype attribute:
the hub stays float32, the format simply finds the zero bits). ``from_dense`` picks
``h`` in ``0 .. min(3, 23 - z)`` with the fewest stored bytes (or
the one its ``head_bits`` argument forces).

Byte layout (little-endian); ``w = 1 + 23 - h - z`` tail bits per entry:

* ``omega`` float32 (K,): the distinct heads, each the entry's bit pattern with sign
  and tail bits cleared (``bits & (0xFF << 23 | (2**h - 1) << (23 - h))``), in canonical
  order: by decreasing count, ties by increasing head.
* ``length_counts`` (Lmax,), smallest unsigned type: codewords of each length ``1 ..
  Lmax`` (``Lmax <= 32``) of the canonical Huffman code of the heads (as in ``ham``);
  empty when K <= 1 (the zero-length code).
* ``words`` uint32: the head codes of all ``m * n`` entries, row-major, MSB-first,
  then zero padding to the end of the word after the one holding the last bit
  (:func:`compactnn.coding.huffman.stream_words`).
* ``block_bits`` (ceil(m / 8) + 1,), smallest unsigned type: the bit of ``words`` at
  which each block of 8 rows starts; the last entry is the stream's length.
* ``tails`` uint32: per entry ``w`` bits, ``s`` then ``f``'s bits ``22 - h`` down to
  ``z``, row-major, MSB-first, zero-padded the same way (row ``r`` starts at bit
  ``r * n * w``).

An entry decodes to ``head | s << 31 | (tail mod 2**(w-1)) << z``. Every exponent comes
from ``omega`` (checked finite), so no stored bits can produce NaN or Inf.

Stored bits ~ ``m * n * (w + H)`` with ``H`` the head entropy plus Huffman's excess;
on MiniLM's float32 weights about 26.6 of 32 bits, on the same weights as bfloat16
about 10.6 of 16 (``benchmarks/lossless_float.py``, docs/results.md).

Products run on the native kernels where the extension is built (``LFloatMatrix``,
``kernels/csrc/lfloat.c``; the stored arrays are read in place, nothing is copied but
the 2^11-entry decoding table): eight blocks' head streams decode in one loop (their
table lookups overlap; a stream keeps only its bit position, each code is one unaligned
64-bit window load and one lookup of ``head | length``), 256 entries per stream at a
time into an L1 chunk, then each chunk gets its tails (on AVX-512 CPUs with VBMI 16 at
a time: one 64-byte load, one ``vpermb`` and one variable shift) and is stored
(``decode_rows``) or dotted with up to :data:`FUSED_MAX_BATCH` inputs at once
(``rows``, also ``CompactLinear``'s fused call); larger batches decode the matrix a
tile at a time for torch's GEMM (:mod:`compactnn.formats._tiles`). Threads split the
blocks in groups of 8. On the numba path (no extension, or ``COMPACTNN_KERNELS=numba``)
a tile of rows (about 256 kB, :func:`index_map.tile_rows`) is decoded at a time on one
numba thread (two blocks interleaved) and multiplied with BLAS; ``W @ x`` runs a fused
kernel, blocks in parallel. Decoding costs about 0.8 ns per entry natively (2.5 ns on
numba) whatever the batch, so the products approach the dense time only when the batch
amortises it (docs/results.md).

Cost of ``W @ x`` (:meth:`LosslessFloat.cost`), numba path: ``m * n`` adds, multiplies,
``x`` reads and decoding-table lookups (plus the canonical search of codes longer than
the table, counted by a decoding pass); ``words``: per block, the words from its first
bit through the word after its last; ``tails``: every word once; ``block_bits`` one read
per block; ``y``: m writes. Native paths: see :meth:`LosslessFloat._native_cost`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compactnn._validate import is_int
from compactnn.coding.huffman import (
    decode_tables,
    encode,
    huffman_lengths,
    length_counts,
)
from compactnn.coding.streams import stream_words, words_touched
from compactnn.formats._tiles import matmul_tiles, numba_tiles, rmatmul_tiles
from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import (
    FormatError,
    as_dense_input,
    require_dtype,
    require_len,
    require_stream,
)
from compactnn.formats.huffman_common import check_code, huffman_cost, narrow
from compactnn.formats.index_map import tile_rows
from compactnn.formats.registry import register
from compactnn.kernels import huffman as hk
from compactnn.kernels import lossless_float as k
from compactnn.kernels.lossless_float import BLOCK

LUT_BITS = 10
"""First-level decoding table index bits."""

NATIVE_LUT_BITS = 12
"""Index bits of the native kernels' decoding table (``CNN_LFLOAT_T`` in
``csrc/cnn_kernels.h``): 2^12 entries of one or two codes."""

NATIVE_STREAMS, NATIVE_CHUNK = 8, 256
"""Block streams the native kernels decode in one loop and entries per stream per chunk
(``LF_S``, ``LF_C`` in ``csrc/lfloat.c``)."""

FUSED_MAX_BATCH = 8
"""Largest batch the native kernel multiplies as it decodes (``rows``); larger batches
decode tiles for torch's GEMM (:mod:`compactnn.formats._tiles`)."""

MAX_HEAD_BITS = 3
"""Largest number of mantissa bits ``from_dense`` tries to code with the exponent."""

_FMT = "lossless_float"


def _zero_bits(bits: np.ndarray) -> int:
    """Low mantissa bits that are zero in every entry (23 if every mantissa is 0)."""
    mant = int(np.bitwise_or.reduce(bits & np.uint32(0x7FFFFF))) if bits.size else 0
    return 23 if mant == 0 else (mant & -mant).bit_length() - 1


def _head_code(bits: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head symbols (exponent and ``h`` mantissa bits, as integers), the present heads
    in canonical order and their counts."""
    head = (bits >> np.uint32(23 - h)) & np.uint32((1 << (8 + h)) - 1)
    counts = np.bincount(head, minlength=1 << (8 + h))
    present = np.flatnonzero(counts)
    order = present[np.argsort(-counts[present], kind="stable")]
    return head, order, counts[order]


def _block_starts(m: int, n: int) -> np.ndarray:
    """Entry index at which each block of ``BLOCK`` rows starts, then ``m * n``."""
    return np.append(np.arange(0, m, BLOCK, dtype=np.int64), m) * n


def _is_small_int(v: Any, hi: int) -> bool:
    return is_int(v, 0, hi, numpy=False)


@register
class LosslessFloat(CompactMatrix):
    """Unquantized weights: Huffman-coded exponent heads, raw sign and mantissa tails;
    products decode a tile of rows at a time."""

    format_id = _FMT
    arrays = ("omega", "length_counts", "words", "block_bits", "tails")
    attrs = ("head_bits", "zero_bits")

    @classmethod
    def from_dense(cls, W: np.ndarray, head_bits: int | None = None) -> LosslessFloat:
        """Encode ``W``; ``head_bits`` None picks the smallest of ``0 .. min(3, 23 - z)``,
        an integer in that range forces it."""
        W = as_dense_input(W)
        m, n = W.shape
        bits = W.reshape(-1).view(np.uint32)
        z = _zero_bits(bits)
        hmax = min(MAX_HEAD_BITS, 23 - z)
        if head_bits is not None and not _is_small_int(head_bits, hmax):
            raise ValueError(f"head_bits must be an integer in 0..{hmax}, got {head_bits!r}")
        best = None
        for h in range(hmax + 1) if head_bits is None else (head_bits,):
            head, order, counts = _head_code(bits, h)
            lengths = huffman_lengths(counts)
            size = int(counts @ lengths.astype(np.int64)) + 32 * order.size \
                + bits.size * (24 - h - z)
            if best is None or size < best[0]:
                best = (size, h, head, order, lengths)
        _, h, head, order, lengths = best
        rank = np.zeros(1 << (8 + h), np.int64)
        rank[order] = np.arange(order.size)
        lc = length_counts(lengths)
        words, block_bits = encode(rank[head], lc, _block_starts(m, n))
        omega = (order.astype(np.uint32) << np.uint32(23 - h)).view(np.float32)
        w = 24 - h - z
        tail = ((bits >> np.uint32(31)) << np.uint32(w - 1)) | (
            (bits & np.uint32((1 << (23 - h)) - 1)) >> np.uint32(z))
        tails = np.zeros(stream_words(bits.size * w), np.uint32)
        k.pack_fixed(tail, w, tails)
        return cls(W.shape, omega=omega, length_counts=narrow(lc), words=words,
                   block_bits=narrow(block_bits), tails=tails, head_bits=h, zero_bits=z)

    @property
    def tail_bits(self) -> int:
        """Stored sign and mantissa bits per entry."""
        return 24 - self.head_bits - self.zero_bits

    def _prepare(self) -> None:
        tab = decode_tables(self.omega, self.length_counts, LUT_BITS)
        self._tab = tab
        self._block_bits = self.block_bits.astype(np.int64)
        self._stats: np.ndarray | None = None  # scan totals, computed by cost()
        self._args = (self.words, self._block_bits, self.tails, self.tail_bits,
                      self.zero_bits, tab.lut_bits, tab.lut_len, tab.lut_val.view(np.uint32),
                      tab.limit, tab.base, self.omega.view(np.uint32))

    # ---- conversion and products ------------------------------------------------------
    def _native(self):
        """The native kernel object (``LFloatMatrix``, on the stored arrays in place;
        built on first use), or None on the numba path."""
        return self._cached_kernel(lambda nat: nat.LFloatMatrix(
            self.words, self._block_bits, self.tails, self.length_counts.astype(np.int64),
            self.omega, *self.shape, self.head_bits, self.zero_bits))

    def to_dense(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        if out.size:
            kern = self._native()
            if kern is not None:
                kern.decode_rows(0, self.shape[0], out)
            else:
                k.rows_to_bits(*self._args, 0, out.view(np.uint32))
        return out

    def fused_rows(self, batch: int):
        return self._native() if batch <= FUSED_MAX_BATCH else None

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(x, y, 1, None)
        else:
            k.float_matvec(*self._args, x, y)

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        b = X.shape[1]
        if b == 1:
            self._matvec(X[:, 0], Y[:, 0])
            return
        kern = self._native()
        if kern is not None and b <= FUSED_MAX_BATCH:  # (X^T W^T)^T on the fused kernel
            Yt = np.empty((b, self.shape[0]), np.float32)
            kern.rows(np.ascontiguousarray(X.T), Yt, b, None)
            Y[:] = Yt.T
        elif kern is not None:
            matmul_tiles(kern.decode_rows, self.shape, X, Y)
        else:
            for r0, tile in self._tiles():
                np.matmul(tile, X, out=Y[r0:r0 + tile.shape[0]])

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        b = X.shape[0]
        kern = self._native()
        if kern is not None and b <= FUSED_MAX_BATCH:
            kern.rows(X, Y, b, None)
        elif kern is not None:
            rmatmul_tiles(kern.decode_rows, self.shape, X, Y)
        elif b == 1:
            self._matvec(X[0], Y[0])
        else:
            for r0, tile in self._tiles():  # a column block of the row-major output
                np.matmul(X, tile.T, out=Y[:, r0:r0 + tile.shape[0]])

    def _tiles(self):
        """Yield ``(first row, decoded rows)`` tile by tile into one scratch buffer on the
        numba path (decoded on one numba thread; see
        :func:`~compactnn.formats._tiles.numba_tiles`)."""
        m, n = self.shape
        return numba_tiles(
            lambda r0, nr, out: k.rows_to_bits(*self._args, r0, out.view(np.uint32)),
            self.shape, tile_rows(m, n))

    def _native_steps(self) -> tuple[int, int, int]:
        """(table lookups, codes longer than the table, their ``limit`` comparisons) of
        the native decoder, walked on the code lengths with its rule (a lookup takes two
        codes when both fit in its bits; ``LFloatMatrix.counts()`` computes the same)."""
        m, n = self.shape
        lc = self.length_counts.astype(np.int64)
        if m * n == 0 or lc.shape[0] == 0:
            return 0, 0, 0
        lengths = np.repeat(np.arange(1, lc.shape[0] + 1, dtype=np.uint8), lc)
        heads = self.omega.view(np.uint32)
        order = np.argsort(heads)
        keep = np.uint32(0xFF << 23 | ((1 << self.head_bits) - 1) << (23 - self.head_bits))
        head = self.to_dense().reshape(-1).view(np.uint32) & keep
        sym = order[np.searchsorted(heads[order], head)]
        steps = k.native_steps(lengths[sym], _block_starts(m, n), NATIVE_LUT_BITS)
        return tuple(int(v) for v in steps)

    # ---- validation -----------------------------------------------------------------
    def _check(self) -> None:
        m, n = self.shape
        h, z = self.head_bits, self.zero_bits
        if not (_is_small_int(h, 23) and _is_small_int(z, 23) and h + z <= 23):
            raise FormatError(f"{_FMT}: attributes head_bits={h!r}, zero_bits={z!r} must be "
                              "integers >= 0 with head_bits + zero_bits <= 23")
        check_code(_FMT, self.omega, self.length_counts, m * n)
        heads = self.omega.view(np.uint32)
        if np.any(heads & np.uint32(0x80000000 | ((1 << (23 - h)) - 1))):
            raise FormatError(f"{_FMT}: array 'omega' holds a head with sign or tail bits set")
        if np.unique(heads).size != heads.size:
            raise FormatError(f"{_FMT}: array 'omega' holds a head twice")
        for name in ("words", "tails"):
            if getattr(self, name).dtype != np.uint32:
                raise FormatError(f"{_FMT}: array {name!r} has dtype "
                                  f"{getattr(self, name).dtype}, expected uint32")
        bb = self.block_bits
        nblocks = -(-m // BLOCK)
        require_dtype(_FMT, "block_bits", bb, "u")
        require_len(_FMT, "block_bits", bb, nblocks + 1)
        if bb[0] != 0 or (nblocks and np.any(bb[1:] < bb[:-1])):
            raise FormatError(f"{_FMT}: array 'block_bits' must start at 0 and not decrease")
        require_stream(_FMT, "words", self.words, int(bb[-1]))
        require_stream(_FMT, "tails", self.tails, m * n * self.tail_bits)
        tab = decode_tables(self.omega, self.length_counts, LUT_BITS)
        self._scan(bb.astype(np.int64), tab)

    def _scan(self, block_bits: np.ndarray, tab) -> np.ndarray:
        """Decoding pass: every block must hold exactly its rows' codes. Returns the
        totals of long codes, their ``limit`` comparisons and symbol-0 codes."""
        m, n = self.shape
        nblocks = block_bits.shape[0] - 1
        err = np.zeros(nblocks, np.int8)
        stats = np.zeros((nblocks, 3), np.int64)
        if nblocks:
            hk.huffman_scan(self.words, block_bits, _block_starts(m, n), tab.lut_bits,
                            tab.lmax, tab.lut_len, tab.limit, err, stats)
        bad = np.flatnonzero(err)
        if bad.size:
            raise FormatError(f"{_FMT}: array 'words', block {int(bad[0])} does not decode to "
                              "exactly its rows' head codes")
        return stats.sum(axis=0)

    # ---- cost model -----------------------------------------------------------------
    def _cost(self, batch: int, backend: str) -> Cost:
        if backend != "numba":
            return self._native_cost(batch)
        m, n = self.shape
        if self._stats is None:
            self._stats = self._scan(self._block_bits, self._tab)
        nlong, ncmp, _ = (int(v) for v in self._stats)
        c = Cost(adds=m * n, mults=m * n)
        bb = self._block_bits
        c.read("words", words_touched(bb[:-1], bb[1:]) if n else 0, self.words)
        c.read("tails", self.tails.shape[0], self.tails)
        huffman_cost(c, self._tab, self.omega, m * n, nlong, ncmp)
        c.read("block_bits", bb.shape[0] - 1, self.block_bits)
        c.read("x", m * n, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)

    def _native_cost(self, batch: int) -> Cost:
        """Counts of the native kernels (``csrc/lfloat.c``; the same on every level):
        per decoding step (one or two codes, :meth:`_native_steps`) one 64-bit window of
        ``words`` (inside the lines just streamed: priced as a 64-byte array) and one
        ``table`` lookup (2^12 entries of 64 bits; codes longer than 12 bits add the
        canonical search); per entry its head written to and read from the L1 chunk; the
        tails streamed once. Up to :data:`FUSED_MAX_BATCH` columns the
        entries go to a row buffer read once per column and dotted with ``x``; larger
        batches decode a tile once and multiply it (torch's GEMM: the tile written once
        and read once)."""
        m, n = self.shape
        if "_ncounts" not in self.__dict__:
            self._ncounts = self._native_steps()
        steps, nlong, ncmp = self._ncounts
        e = m * n
        c = Cost(adds=e * batch, mults=e * batch)
        bb = self._block_bits
        c.read("words", words_touched(bb[:-1], bb[1:]) if n else 0, self.words)
        c.read("window", steps, 64, 64)
        c.read("table", steps, 64, 8 << NATIVE_LUT_BITS)
        if nlong:
            c.read("limit", ncmp, 64, 34 * 8)
            c.read("base", nlong, 64, 34 * 8)
            c.read("heads", nlong, 32, self.omega.nbytes)
        chunk = 4 * NATIVE_STREAMS * NATIVE_CHUNK
        c.write("chunk", e, 32, chunk)
        c.read("chunk", e, 32, chunk)
        c.read("tails", self.tails.shape[0], self.tails)
        c.read("block_bits", bb.shape[0] - 1, 64, 8 * bb.shape[0])
        if batch <= FUSED_MAX_BATCH:
            c.write("values", e, 32, 4 * NATIVE_CHUNK)
            c.read("values", e * batch, 32, 4 * NATIVE_CHUNK)
        else:
            c.write("tile", e, 32, 4 * e)
            c.read("tile", e, 32, 4 * e)
        c.read("x", e * batch, 32, 4 * n * batch)
        c.write("y", m * batch, 32, 4 * m * batch)
        return c
