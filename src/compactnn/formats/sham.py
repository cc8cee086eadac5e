"""``sham``: sparse HAM, CSR structure with plain column indices and Huffman-coded values.

Byte layout (little-endian):

* ``omega`` float32 (K,): the distinct stored values (never +0.0; ``-0.0`` is a
  value) in canonical order, i.e. by decreasing frequency among the stored entries.
* ``length_counts`` (Lmax,), smallest unsigned type holding its largest count:
  codewords of each length ``1..Lmax`` (``Lmax <= 32``); empty when K <= 1 (a single
  value has the zero-length code).
* ``words`` uint32 (``row_bits[-1] // 32 + 2``,): the codewords of the stored values,
  row by row in column order, MSB-first, zero padding to the end of the word after
  the one holding bit ``row_bits[-1]``.
* ``row_bits`` (m+1,), smallest unsigned type holding ``row_bits[-1]``: the bit at
  which each row's codes start.
* ``col_idx`` (nnz,), smallest unsigned type holding n-1: column of each stored entry
  (ascending within a row).
* ``row_ptr`` (m+1,), smallest unsigned type holding nnz: first stored entry of each
  row.

The stored entries are those whose bit pattern is not +0.0, so the round trip is
bit-exact. The decoding lookup table and per-length limits are a runtime cache built
by ``_prepare()`` (not stored, not in ``nbytes``); see :mod:`compactnn.formats.ham`.

Native kernels (as HAM's, plain mode; layout unchanged, version 1): ``matvec`` runs, on
AVX-512 CPUs with VBMI and CD when the values are at most 32 and at least 1/32 of the
entries are stored, the tile kernel (``kernels/csrc/htiles.c``, built at load: 16-row
slices, 32-column tiles of row masks from ``col_idx``, the values coded again with a
code of <= 7 bits decoded 16 rows at once, x and values picked from registers;
4096x4096 at 90%: 0.22 ns per entry, 4.2-5.3x numpy dense); else the fused sparse
matvec, 6 rows per loop, each 11-bit table lookup giving up to two values
multiplied at once with ``x`` at the row's next stored columns (scalar loads:
AVX-512/AVX2 gathers were slower on Zen 4/5); ``matmul``/``rmatmul`` decode 4 rows'
values into symbol buffers and add ``value * X[col, :]`` 64 columns at a
time for any batch when at most half of the entries are stored (else, for batches
> 8, tiles for torch's GEMM). The runtime copy of ``col_idx`` is uint16 (uint8
widened) or the stored uint16/uint32 array itself.

Cost (``cost(batch, backend)``). Numba path: ``nnz`` decodes, adds and multiplies;
``words`` counted as for HAM (words spanned per row plus the 64-bit window's
look-ahead word); ``lut`` one read per decode, ``limit``/``base``/``omega`` for codes
longer than the LUT; ``col_idx`` and ``x`` one read per stored entry; ``row_ptr`` m+1
reads, ``row_bits`` m reads; ``y`` m writes; a batch multiplies the arithmetic, ``x``
and ``y``. Native batch 1 on avx512 where this CPU builds tiles counts the tile kernel
(``tile_cost``); otherwise the fused sparse matvec's steps (6-row blocks): while
every row of the block has two codes left, ``ptab2`` lookups (80 bits) multiply twice
and read two columns (one of them unused when only one code fitted), then ``ptab``
lookups (48 bits) one code each; a block with an empty row takes only one-code steps.
Native batches count one row's walk of the 11-bit ``table`` and the records' ``value *
X[col, :]`` (see :mod:`compactnn.formats.ham`).
"""

from __future__ import annotations

import numpy as np

from compactnn.coding.huffman import build_code, decode_tables, encode
from compactnn.coding.streams import words_touched
from compactnn.formats.base import Cost
from compactnn.formats.checks import FormatError, as_dense_input, require_below, require_pointers
from compactnn.formats.csr import csr_arrays
from compactnn.formats.huffman_common import (
    DENSE_FUSED_MAX_BATCH,
    LUT_BITS,
    RECORD_COLUMNS,
    SPARSE_MAX_DENSITY,
    TILE_MV_MAX_BATCH,
    HuffmanProducts,
    check_code,
    check_stream,
    huffman_cost,
    narrow,
    native_cost,
    scan,
    tile_cost,
)
from compactnn.formats.registry import register
from compactnn.kernels import huffman as k
from compactnn.kernels import huffman_counts as hc


@register
class SHAM(HuffmanProducts):
    """CSR indices with canonical-Huffman-coded values; the dot product decodes values
    while walking the indices."""

    format_id = "sham"
    arrays = ("omega", "length_counts", "words", "row_bits", "col_idx", "row_ptr")
    pointer_arrays = ("row_bits", "row_ptr")

    def _index_bounds(self) -> dict[str, int]:
        return {"col_idx": self.shape[1] - 1}

    @classmethod
    def from_dense(cls, W: np.ndarray) -> SHAM:
        W = as_dense_input(W)
        data, col_idx, row_ptr = csr_arrays(W)
        omega, lc, sym, _ = build_code(data)
        words, row_bits = encode(sym, lc, row_ptr.astype(np.int64))
        return cls(W.shape, omega=omega, length_counts=narrow(lc), words=words,
                   row_bits=narrow(row_bits), col_idx=col_idx, row_ptr=row_ptr)

    @property
    def nnz(self) -> int:
        return int(self.col_idx.shape[0])

    @property
    def stream_bits(self) -> int:
        """Sum of the code lengths of the stored values."""
        return int(self.row_bits[-1])

    def _prepare(self) -> None:
        self._tab = decode_tables(self.omega, self.length_counts, LUT_BITS)
        self._row_bits = self.row_bits.astype(np.int64)
        self._row_ptr = self.row_ptr.astype(np.int64)
        self._stats: np.ndarray | None = None  # scan totals, computed by cost()
        m, n = self.shape
        self._sparse_products = self.nnz <= SPARSE_MAX_DENSITY * m * n

    def _args(self) -> tuple:
        t = self._tab
        return (self.words, self._row_bits, self.col_idx, self._row_ptr, t.lut_bits,
                t.lut_len, t.lut_val, t.limit, t.base, self.omega)

    def _new_kernel(self, nat):
        m, n = self.shape
        cols = self.col_idx if self.col_idx.dtype.itemsize >= 2 else self.col_idx.astype(np.uint16)
        return nat.HuffMatrix(self.words, self._row_bits, self.length_counts.astype(np.int64),
                              self.omega, m, n, False, cols, self._row_ptr)

    def _numba_to_dense(self, out: np.ndarray) -> None:
        if self.nnz:
            k.sham_to_dense(*self._args(), out)

    def _numba_matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        k.sham_matvec(*self._args(), x, y)

    def _numba_matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        k.sham_matmul(*self._args(), X, Y)

    def _check(self) -> None:
        m, n = self.shape
        nnz = self.col_idx.shape[0]
        require_pointers("sham", "row_ptr", self.row_ptr, m + 1, nnz)
        require_below("sham", "col_idx", self.col_idx, n)
        check_code("sham", self.omega, self.length_counts, nnz)
        if np.any(self.omega.view(np.uint32) == 0):
            raise FormatError("sham: array 'omega' holds +0.0, which is never stored")
        check_stream("sham", self.words, self.row_bits, m)
        tab = decode_tables(self.omega, self.length_counts, LUT_BITS)
        scan("sham", self.words, self.row_bits.astype(np.int64),
             self.row_ptr.astype(np.int64), tab)

    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        nnz = self.nnz
        if self._stats is None:
            self._stats = scan("sham", self.words, self._row_bits, self._row_ptr, self._tab)
        if self._runs_native(backend):
            return self._native_cost(batch, backend)
        nlong, ncmp, _ = (int(v) for v in self._stats)
        c = Cost(adds=nnz, mults=nnz)
        rp, rb = self._row_ptr, self._row_bits
        rows = rp[1:] > rp[:-1]
        c.read("words", words_touched(rb[:-1][rows], rb[1:][rows]), self.words)
        huffman_cost(c, self._tab, self.omega, nnz, nlong, ncmp)
        c.read("col_idx", nnz, self.col_idx)
        c.read("row_ptr", m + 1, self.row_ptr)
        c.read("row_bits", m, self.row_bits)
        c.read("x", nnz, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)

    def _native_cost(self, batch: int, backend: str) -> Cost:
        """Counts of the native kernel that runs ``W @ X`` (``batch`` columns) on path
        ``backend``."""
        m, n = self.shape
        nnz, K, lmax, limit = self.nnz, self.omega.shape[0], self._tab.lmax, self._tab.limit
        colbits = max(16, 8 * self.col_idx.dtype.itemsize)  # the runtime copy: >= uint16
        tiles = self._tiles(backend) if batch <= TILE_MV_MAX_BATCH else None
        if tiles:
            return tile_cost(*tiles, m, n, batch)
        c = Cost()
        if lmax == 0:  # one value: no stream
            c.adds = c.mults = nnz * batch
            c.read("col_idx", nnz, colbits, nnz * colbits // 8)
            c.read("x", nnz * batch, 32, 4 * n * batch)
            c.write("y", m * batch, 32, 4 * m * batch)
            return c
        tab = "table"
        if batch == 1:
            esc = lmax > hc.T or not self._complete()
            cnt = self._native_counts(f"pfused{int(esc)}", hc.sparse_fused, self._row_bits,
                                      self._row_ptr, lmax, limit, esc)
            tab = "ptab"
            c.adds = c.mults = int(cnt[hc.MUL])
            c.read("col_idx", int(cnt[hc.COL]), colbits, nnz * colbits // 8)
            c.read("x", int(cnt[hc.XREAD]), 32, 4 * n)
        else:
            cnt = self._native_counts("pwalk", hc.plain_walk, self._row_bits,
                                      np.diff(self._row_ptr), lmax, limit)
            if self._sparse_products or batch <= DENSE_FUSED_MAX_BATCH:
                self._record_cost(c, nnz, batch, n)
                c.read("col_idx", nnz * -(-batch // RECORD_COLUMNS), colbits, nnz * colbits // 8)
            else:  # decoded tiles for torch's GEMM
                c.adds = c.mults = m * n * batch
                c.read("col_idx", nnz, colbits, nnz * colbits // 8)
                c.write("tile", m * n, 32, 4 * m * n)
                c.read("tile", m * n, 32, 4 * m * n)
                c.read("x", m * n * batch, 32, 4 * n * batch)
        c.read("row_ptr", m + 1, 64, 8 * (m + 1))
        rp, rb = self._row_ptr, self._row_bits
        rows = rp[1:] > rp[:-1]
        streamed = words_touched(rb[:-1][rows], rb[1:][rows])
        native_cost(c, cnt, streamed, self.words.shape[0], tab, K, m, batch)
        return c
