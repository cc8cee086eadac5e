"""``ham``: Huffman Address Map, every entry (zeros included) Huffman-coded row by row.

Byte layout (little-endian):

* ``omega`` float32 (K,): the distinct entry values (by bit pattern) in canonical
  order, i.e. by decreasing frequency (ties: ascending value, then bit pattern).
* ``length_counts`` (Lmax,), smallest unsigned type holding its largest count: the
  number of codewords of length ``1..Lmax`` (``Lmax <= 32``); symbol ``i`` of
  ``omega`` gets the ``i``-th canonical codeword. Empty when K <= 1: a single value
  has the zero-length code and costs no stream bits.
* ``words`` uint32 (``row_bits[-1] // 32 + 2``,): the codewords of all ``m * n``
  entries, row-major, MSB-first (:mod:`compactnn.kernels.bitpack`), then zero
  padding to the end of the word after the one holding bit ``row_bits[-1]``.
* ``row_bits`` (m+1,), smallest unsigned type holding ``row_bits[-1]``: the bit at
  which each row starts; ``row_bits[-1]`` is the sum of all code lengths.

Stored bits = ``32 * (sum(code lengths) // 32 + 2)`` + the table (``omega``,
``length_counts``) + ``row_bits``. The decoding lookup table (``2**T`` entries of
length + value, ``T = min(Lmax, 10)``) and the per-length ``limit``/``base`` arrays
are a runtime cache built by ``_prepare()``; they are not stored and not in
``nbytes``.

``check()`` validates dtypes, lengths, the code (Kraft sum <= 1, symbol count, Lmax),
``row_bits`` (from 0, non-decreasing, covered by ``words``), zero padding, and runs a
decoding pass that must find exactly ``n`` codes in every row.

Products: when +0.0 is symbol 0 with the 1-bit code ``0`` (always the case when more
than 40% of the entries are +0.0), runs of zero entries are runs of 0 bits, skipped with a
count-leading-zeros instruction; only the other entries are looked up, multiplied and
added ("zero-run mode"). Otherwise every entry is decoded and multiplied.

Native kernels (``HuffMatrix``, ``kernels/csrc/huffman.c``; K <= 256, else the numba
kernels run): the stored layout is unchanged (version 1); at load the words are copied
as big-endian bytes (one unaligned 8-byte load gives the next 57+ bits) and the
decoding tables are built. Batch 1 in zero-run mode runs the fused zero-run matvec:
per step one count-leading-zeros skips the zero run and one lookup in a 12-bit fused
table gives the next non-zero value (and on rows with >= 20% non-zeros a second one
when it fits), multiplied at once, the column following from the code's bit position;
8 rows per loop; the constructor walks the stream once (the loop trusts it). Other
products decode 4 rows into records ``(column << 8 | symbol)`` or symbols (11-bit
table, up to two symbols per lookup); ``matmul`` / ``rmatmul`` with ``b`` columns
(zero-run mode, or ``b <= 8``) add ``value * X[column, :]`` 64 columns at a time on a
64-byte aligned copy of X (zero-run mode on the AVX-512 level where the tiles below are
built: the records come from decoding the tiles, 16 rows at once, instead of the
stream); plain mode with ``b > 8`` decodes tiles for torch's GEMM
(``formats/_tiles.py``). On AVX-512 CPUs with VBMI and CD, batch 1 in zero-run mode
with at most 32 non-zero values runs the tile kernel instead (``kernels/csrc/htiles.c``,
built at load, never stored: 16-row slices, 32-column tiles of row masks, the
non-zero values coded again with a code of <= 7 bits decoded 16 rows at once; shared
with sHAM). Measured on 4096x4096, 90% pruned, 32 values, 1 thread: the fused
zero-run matvec 1.2-2.0 ns per non-zero entry (0.74-0.92x numpy dense's time on a
loaded machine), the tile kernel 0.22 ns (4.3-5.2x; docs/architecture/huffman.md).

Cost (``cost(batch, backend)``: ``W @ X`` with ``batch`` columns on a kernel path,
default the active one). Numba path: "coded" entries = the entries that are looked up
and multiplied (all ``m * n``, or those that are not +0.0 in zero-run mode): that many
adds, multiplies, ``lut`` reads (element = 8-bit length + 32-bit value, array = the
LUT's bytes) and ``x`` reads; ``words``: per row, the 32-bit words from the one
holding its first bit through the word after the one holding its last bit (the
decoder buffers 64 bits); ``limit`` one read per comparison of the canonical search
and ``base``/``omega`` one read per code longer than ``T`` (counted by a decoding pass
on the first call); ``row_bits`` one read per row; ``y`` one write per row; a batch
multiplies the arithmetic, ``x`` and ``y`` (the stream is decoded once). Native paths
(:mod:`compactnn.kernels.huffman_counts` walks the stream with the kernel's schedule
once and caches the counts): batch 1 on avx512 where this CPU builds tiles counts the
tile kernel (``tile_cost``: its steps, each tile's masks and inputs once); otherwise
batch 1 in zero-run mode counts the fused matvec's steps
(8-row blocks, a short last block repeating its last row): one 64-bit ``window`` load
per step, ``ztab`` lookups (48 bits: value, length, x step) or, in the two-code
variant (x86 levels, complete codes of <= 12 bits, >= 20% non-zeros), ``ztab2``
lookups (88 bits) that multiply twice whether or not a second code fitted, steps that
only skip 45 zero entries, and canonical searches (``limit``/``base``/``lut``);
``stream``: the words as above, brought in once. Batches on the tiles count
``tile_records_cost`` (the tile walk, its ring of records and their transfer to the
rows, then the records as below). Plain mode and other batches count one row's walk
of the 11-bit table (``dec_plain1``/``dec_zrun1``; the 4-row loops make the same
lookups but around escapes): ``table`` lookups of one or two codes; batches then add
``value * X[col, :]`` from records written once and read once per 64 columns (plain
batches above 8: decoded tiles and ``m * n * batch`` GEMM multiply-adds).
"""

from __future__ import annotations

import numpy as np

from compactnn.coding.huffman import (
    build_code,
    decode_tables,
    encode,
)
from compactnn.coding.streams import words_touched
from compactnn.formats.base import Cost
from compactnn.formats.checks import (
    as_dense_input,
)
from compactnn.formats.huffman_common import (
    DENSE_FUSED_MAX_BATCH,
    LUT_BITS,
    TILE_MV_MAX_BATCH,
    ZPAIR_DENSITY,
    HuffmanProducts,
    check_code,
    check_stream,
    huffman_cost,
    narrow,
    native_cost,
    scan,
    tile_cost,
    tile_records_cost,
)
from compactnn.formats.registry import register
from compactnn.kernels import huffman as k
from compactnn.kernels import huffman_counts as hc


@register
class HAM(HuffmanProducts):
    """Every entry Huffman-coded (canonical, <= 32-bit codes), rows decodable in
    parallel; products decode on the fly."""

    format_id = "ham"
    arrays = ("omega", "length_counts", "words", "row_bits")
    pointer_arrays = ("row_bits",)

    @classmethod
    def from_dense(cls, W: np.ndarray) -> HAM:
        W = as_dense_input(W)
        m, n = W.shape
        omega, lc, sym, _ = build_code(W)
        words, row_bits = encode(sym, lc, np.arange(m + 1, dtype=np.int64) * n)
        return cls(W.shape, omega=omega, length_counts=narrow(lc), words=words,
                   row_bits=narrow(row_bits))

    def _prepare(self) -> None:
        self._tab = decode_tables(self.omega, self.length_counts, LUT_BITS)
        self._row_bits = self.row_bits.astype(np.int64)
        self._stats: np.ndarray | None = None  # scan totals, computed by cost()
        lc = self.length_counts
        # zero-run mode: +0.0 is symbol 0 with the 1-bit code "0"
        self._zrun = bool(lc.shape[0] and lc[0] and self.omega.view(np.uint32)[0] == 0)
        self._sparse_products = self._zrun  # +0.0 is at least a third of the entries

    @property
    def stream_bits(self) -> int:
        """Sum of the code lengths of all entries (the Huffman-coded size)."""
        return int(self.row_bits[-1])

    def _args(self) -> tuple:
        t = self._tab
        return (self.words, self._row_bits, self._zrun, t.lut_bits, t.lut_len, t.lut_val,
                t.limit, t.base, self.omega)

    def _new_kernel(self, nat):
        m, n = self.shape
        return nat.HuffMatrix(self.words, self._row_bits, self.length_counts.astype(np.int64),
                              self.omega, m, n, self._zrun)

    def _numba_to_dense(self, out: np.ndarray) -> None:
        k.ham_to_dense(*self._args(), out)

    def _numba_matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        k.ham_matvec(*self._args(), x, y)

    def _numba_matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        k.ham_matmul(*self._args(), X, Y)

    def _check(self) -> None:
        m, n = self.shape
        check_code("ham", self.omega, self.length_counts, m * n)
        check_stream("ham", self.words, self.row_bits, m)
        tab = decode_tables(self.omega, self.length_counts, LUT_BITS)
        scan("ham", self.words, self.row_bits.astype(np.int64),
             np.arange(m + 1, dtype=np.int64) * n, tab)

    def _cost(self, batch: int, backend: str) -> Cost:
        m, n = self.shape
        if self._stats is None:
            self._stats = scan("ham", self.words, self._row_bits,
                               np.arange(m + 1, dtype=np.int64) * n, self._tab)
        nlong, ncmp, nzero = (int(v) for v in self._stats)
        coded = m * n - nzero if self._zrun else m * n
        if self._runs_native(backend):
            return self._native_cost(batch, backend, coded)
        c = Cost(adds=coded, mults=coded)
        rb = self._row_bits
        c.read("words", words_touched(rb[:-1], rb[1:]) if n else 0, self.words)
        huffman_cost(c, self._tab, self.omega, coded, nlong, ncmp)
        c.read("row_bits", m, self.row_bits)
        c.read("x", coded, 32, 4 * n)
        c.write("y", m, 32, 4 * m)
        return c.per_column(batch)

    def _native_cost(self, batch: int, backend: str, coded: int) -> Cost:
        """Counts of the native kernel that runs ``W @ X`` (``batch`` columns)."""
        m, n = self.shape
        K, lmax, limit = self.omega.shape[0], self._tab.lmax, self._tab.limit
        rb = self._row_bits
        c = Cost()
        if lmax == 0:  # one value: no stream, every entry multiplied by it
            c.adds = c.mults = m * n * batch
            c.read("x", m * n * batch, 32, 4 * n)
            c.write("y", m * batch, 32, 4 * m * batch)
            return c
        tab = "table"
        tiles = self._tiles(backend) if self._zrun else None
        if tiles and batch <= TILE_MV_MAX_BATCH:
            return tile_cost(*tiles, m, n, batch)
        if tiles:
            return tile_records_cost(*tiles, self._kernel.tile_flushes, coded, m, n, batch)
        if self._zrun and batch == 1:
            pair = (backend in ("avx2", "avx512") and lmax <= hc.ZT1 and self._complete()
                    and coded >= ZPAIR_DENSITY * m * n)
            cnt = self._native_counts(f"zfused{int(pair)}", hc.zrun_fused, rb, lmax, limit,
                                      pair, True)
            tab = "ztab"
            c.adds = c.mults = int(cnt[hc.MUL])
            c.read("x", int(cnt[hc.XREAD]), 32, 4 * n)
        elif self._zrun:
            cnt = self._native_counts("zwalk", hc.zrun_walk, rb, n, lmax, limit)
            self._record_cost(c, coded, batch, n)
        else:
            cnt = self._native_counts("pwalk", hc.plain_walk, rb, np.full(m, n, np.int64),
                                      lmax, limit)
            c.adds = c.mults = m * n * batch
            c.read("x", m * n * batch, 32, 4 * n)
            if batch > DENSE_FUSED_MAX_BATCH:  # decoded tiles for torch's GEMM
                c.write("tile", m * n, 32, 4 * m * n)
                c.read("tile", m * n, 32, 4 * m * n)
            else:
                c.read("lut", m * n, 32, 4 * max(K, 64))
        streamed = words_touched(rb[:-1], rb[1:]) if n else 0
        native_cost(c, cnt, streamed, self.words.shape[0], tab, K, m, batch)
        return c
