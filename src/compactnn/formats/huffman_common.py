"""What the Huffman formats (``ham``, ``sham``) and ``lossless_float`` share: the code and
stream checks, the scan of a stream, the cost counts of the numba and native kernels,
and ``HuffmanProducts``, the products on the native Huffman kernels."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from compactnn.coding.huffman import (
    MAX_CODE_LENGTH,
    DecodeTables,
    kraft_sum,
)
from compactnn.formats._tiles import matmul_tiles, rmatmul_tiles
from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import (
    FormatError,
    require_dtype,
    require_finite,
    require_len,
    require_stream,
)
from compactnn.formats.dtypes import index_dtype
from compactnn.kernels import backend
from compactnn.kernels import huffman as k
from compactnn.kernels import huffman_counts as hc

DENSE_FUSED_MAX_BATCH = 8
"""Largest batch dense HAM multiplies in its fused kernel; larger ones decode tiles for
torch's GEMM (:mod:`compactnn.formats._tiles`). Sparse (sHAM, zero-run) products are
always fused."""

LUT_BITS = 10
"""First-level decoding table index bits of the numba kernels (4 KiB of lengths +
values); the native kernels use an 11-bit two-symbol table (``CNN_HUFF_T``)."""

NATIVE_MAX_SYMBOLS = 256
"""Largest codebook the native kernels decode (symbols are bytes); larger ones, and
matrices of 2**24 columns or more, run on the numba kernels."""

SPARSE_MAX_DENSITY = 0.5
"""Batched products walk the decoded non-zeros (``HuffMatrix.matmul``) when at most
this share of the entries is stored or non-zero, else decode tiles for torch's GEMM."""

_SCAN_ERRORS = {
    1: "holds an unused code prefix",
    2: "has codes running past the row's end",
    3: "has bits left over after its last code",
}


def narrow(arr: np.ndarray) -> np.ndarray:
    """``arr`` in the smallest unsigned dtype that holds its largest value."""
    return arr.astype(index_dtype(int(arr.max()) if arr.size else 0))


def check_code(fmt: str, omega: np.ndarray, length_counts: np.ndarray, coded: int) -> None:
    """Validate a stored canonical code for ``coded`` coded entries."""
    require_finite(fmt, "omega", omega)
    require_dtype(fmt, "length_counts", length_counts, "u")
    n_sym = omega.shape[0]
    lmax = length_counts.shape[0]
    if lmax > MAX_CODE_LENGTH:
        raise FormatError(
            f"{fmt}: array 'length_counts' has {lmax} lengths, more than {MAX_CODE_LENGTH}"
        )
    if lmax:
        if int(length_counts[-1]) == 0:
            raise FormatError(f"{fmt}: array 'length_counts' ends with a zero count")
        if kraft_sum(length_counts) > 1:
            raise FormatError(f"{fmt}: array 'length_counts' is an over-full code (Kraft sum > 1)")
        total = sum(int(c) for c in length_counts)
        if total != n_sym:
            raise FormatError(
                f"{fmt}: array 'length_counts' counts {total} codes but 'omega' has {n_sym} symbols"
            )
    elif n_sym > 1:
        raise FormatError(f"{fmt}: array 'length_counts' is empty but 'omega' has {n_sym} symbols")
    if (coded > 0) != (n_sym > 0):
        raise FormatError(f"{fmt}: array 'omega' has {n_sym} symbols for {coded} coded entries")


def check_stream(fmt: str, words: np.ndarray, row_bits: np.ndarray, m: int) -> None:
    """Validate ``words`` and ``row_bits`` of an m-row stream (not yet its codes)."""
    if words.dtype != np.uint32:
        raise FormatError(f"{fmt}: array 'words' has dtype {words.dtype}, expected uint32")
    require_dtype(fmt, "row_bits", row_bits, "u")
    require_len(fmt, "row_bits", row_bits, m + 1)
    if row_bits[0] != 0:
        raise FormatError(f"{fmt}: array 'row_bits' must start at 0")
    if m and np.any(row_bits[1:] < row_bits[:-1]):
        raise FormatError(f"{fmt}: array 'row_bits' is not non-decreasing")
    require_stream(fmt, "words", words, int(row_bits[-1]))


def scan(
    fmt: str, words: np.ndarray, row_bits: np.ndarray, row_ptr: np.ndarray, tab: DecodeTables
) -> np.ndarray:
    """Decoding pass over a stream that passed ``check_stream``: every row must hold
    exactly ``row_ptr[r+1] - row_ptr[r]`` codes. Returns the totals of long codes
    (longer than the LUT), their ``limit`` comparisons and symbol-0 codes."""
    m = row_bits.shape[0] - 1
    err = np.zeros(m, np.int8)
    stats = np.zeros((m, 3), np.int64)
    if m:
        k.huffman_scan(words, row_bits, row_ptr, tab.lut_bits, tab.lmax, tab.lut_len,
                       tab.limit, err, stats)
    bad = np.flatnonzero(err)
    if bad.size:
        r = int(bad[0])
        raise FormatError(f"{fmt}: array 'words', row {r} {_SCAN_ERRORS[int(err[r])]}")
    return stats.sum(axis=0)


def huffman_cost(c: Cost, tab: DecodeTables, omega: np.ndarray, decodes: int,
                 nlong: int, ncmp: int) -> None:
    """Record the table reads of ``decodes`` LUT decodes, ``nlong`` of them with the
    canonical search (``ncmp`` comparisons), into ``c``."""
    c.read("lut", decodes, 40, tab.lut_len.nbytes + tab.lut_val.nbytes)
    if nlong:
        c.read("limit", ncmp, tab.limit)
        c.read("base", nlong, tab.base)
        c.read("omega", nlong, omega)


ZPAIR_DENSITY = 0.2
"""Share of non-zero entries from which the fused zero-run matvec decodes two codes per
lookup (``ZPAIR_DENSITY`` in ``csrc/py_huffman.c``)."""


NATIVE_TABLES = {
    "table": (64, 64, 8 << hc.T),  # cnn_huff_entry: 8 bytes, every field used
    "ztab": (48, 88, 16 << hc.ZT1 - 1),  # cnn_huff_zent: val, len1, adj1 | + val2, off2;
    # only the upper half (indices from a code's leading 1) is ever read
    "ptab": (48, 80, 12 << hc.T),  # cnn_huff_pent: v0, n, len0 | v0, v1, n, bits
}
"""Decoding tables of the native kernels: (bits a one-code step loads, bits a two-code
step loads, bytes of the table the kernel indexes)."""


def native_cost(c: Cost, counts: np.ndarray, streamed: int, nwords: int, table: str,
                K: int, m: int, batch: int) -> None:
    """Record the reads of a native kernel walk (``huffman_counts`` counts) into ``c``:
    ``streamed`` 32-bit words of the stream (``nwords`` in all) brought in once, one
    64-bit ``window`` load per step (unaligned loads inside the cache lines just
    streamed: priced as a 64-byte array), the lookups of ``table``
    (:data:`NATIVE_TABLES`; two-code steps as ``<table>2``), the canonical search's
    ``limit``/``base`` and codebook reads, the runtime int64 row pointers and ``y``
    (``batch`` columns)."""
    c.read("stream", streamed, 32, 4 * nwords + 16)
    c.read("window", int(counts[hc.PEEK]), 64, 64)
    one, two, nbytes = NATIVE_TABLES[table]
    c.read(table, int(counts[hc.TAB] - counts[hc.TAB2]), one, nbytes)
    if counts[hc.TAB2]:
        c.read(table + "2", int(counts[hc.TAB2]), two, nbytes)
    if counts[hc.ESC]:
        c.read("limit", int(counts[hc.LIMIT]), 64, 34 * 8)
        c.read("base", int(counts[hc.ESC]), 64, 34 * 8)
        c.read("lut", int(counts[hc.ESC]), 32, 4 * max(K, 64))
    c.read("row_bits", int(counts[hc.ROWS]), 64, 8 * (m + 1))
    c.write("y", m * batch, 32, 4 * m * batch)


RECORD_COLUMNS = 64
"""Columns of X the batched native kernels multiply per pass over a row's records
(``CK`` in ``csrc/huffman.c``)."""

TILE_ROWS, TILE_COLS = 16, 32
"""Rows of a slice and columns of a tile of the batch-1 tile kernel (``csrc/htiles.c``)."""


TILE_MV_MAX_BATCH = 4
"""Largest batch the native kernels run as one tile matvec per input where the tiles are
built (``TILE_MV_MAX_BATCH`` in ``csrc/py_huffman.c``)."""


def tile_cost(steps: int, words: int, m: int, n: int, batch: int = 1) -> Cost:
    """What the batch-1 tile kernel does (``steps`` steps over a stream of ``words``
    16-bit words): each tile's 16 masks and 32 inputs loaded once, the stream brought
    in once, per step a 32-byte window of it (inside the lines just streamed: priced
    as a 64-byte array) and a step flag, the 7-bit table and codebook lookups in
    registers and one 16-lane FMA (idle lanes included); two windows start each
    slice. ``batch`` inputs (at most :data:`TILE_MV_MAX_BATCH`) run it once each."""
    slices, blocks = -(-m // TILE_ROWS), -(-n // TILE_COLS)
    tiles, b = slices * blocks, batch
    c = Cost(adds=TILE_ROWS * steps * b, mults=TILE_ROWS * steps * b)
    c.read("masks", TILE_ROWS * tiles * b, 32, 4 * TILE_ROWS * tiles)
    c.read("x", TILE_COLS * tiles * b, 32, 4 * n * b)
    c.read("stream", words * b, 16, 2 * words)
    c.read("window", (steps + 2 * slices) * b, 256, 64)
    c.read("adv", steps * b, 8, steps)
    c.read("slice_ptr", 2 * (slices + 1) * b, 64, 16 * (slices + 1))
    c.read("table", 128 * b, 8, 128)
    c.read("lut", 32 * b, 32, 128)
    c.write("y", m * b, 32, 4 * m * b)
    return c


def tile_records_cost(steps: int, words: int, flushes: int, records: int, m: int, n: int,
                      batch: int) -> Cost:
    """What the batched products on the tiles do (zero-run ham, ``batch`` > 1): the
    tile kernel's steps without x (masks, stream, windows, step flags, table), each
    step's 16 records stored to a 16-step ring, each of the ``flushes`` full rings
    loaded, transposed and stored to the 16 rows as whole vectors (16 records a row),
    then the records multiplied as the stream path's (:meth:`HuffmanProducts._record_cost`)."""
    slices, blocks = -(-m // TILE_ROWS), -(-n // TILE_COLS)
    tiles = slices * blocks
    c = Cost()
    c.read("masks", TILE_ROWS * tiles, 32, 4 * TILE_ROWS * tiles)
    c.read("stream", words, 16, 2 * words)
    c.read("window", steps + 2 * slices, 256, 64)
    c.read("adv", steps, 8, steps)
    c.read("slice_ptr", 2 * (slices + 1), 64, 16 * (slices + 1))
    c.read("table", 128, 8, 128)
    c.write("ring", TILE_ROWS * steps, 32, 4 * TILE_ROWS * TILE_ROWS)
    c.read("ring", TILE_ROWS * TILE_ROWS * flushes, 32, 4 * TILE_ROWS * TILE_ROWS)
    c.write("records", TILE_ROWS * TILE_ROWS * flushes, 32, 4 * records)
    HuffmanProducts._record_cost(c, records, batch, n, written=False)
    c.write("y", m * batch, 32, 4 * m * batch)
    return c


class HuffmanProducts(CompactMatrix):
    """Products of the Huffman formats on the native kernels (``HuffMatrix``), with
    the numba kernels as fallback (no extension, numba path, or K > 256)."""

    _sparse_products = True  # batched products walk the non-zero entries

    @abstractmethod
    def _new_kernel(self, nat):
        """The format's ``HuffMatrix`` on the native module ``nat``."""

    def _native_counts(self, key: str, fn, *args) -> np.ndarray:
        """``fn(*args)`` (a ``huffman_counts`` walk), computed once per ``key``."""
        cache = self.__dict__.setdefault("_counts", {})
        if key not in cache:
            cache[key] = fn(hc.stream_bits(self.words), *args)
        return cache[key]

    def _runs_native(self, backend: str) -> bool:
        """Whether kernel path ``backend`` runs this matrix on the native kernels."""
        return (backend != "numba" and self.omega.shape[0] <= NATIVE_MAX_SYMBOLS
                and self.shape[1] < 1 << 24)

    def _tiles(self, path: str) -> tuple[int, int] | None:
        """(steps, words) of the batch-1 tile kernel when kernel path ``path`` runs it on
        this CPU (AVX-512 with VBMI and CD; the kernel object builds the tiles), else
        None."""
        nat = backend._ext
        if path != "avx512" or nat is None or not nat.htile_cpu() or not self._runs_native(path):
            return None
        kern = self.__dict__.get("_kernel")
        if kern is None:
            kern = self._kernel = self._new_kernel(nat)
        return (kern.tile_steps, kern.tile_words) if kern.tile_steps else None

    def _complete(self) -> bool:
        return bool(self.length_counts.shape[0]) and kraft_sum(self.length_counts) == 1

    @staticmethod
    def _record_cost(c: Cost, records: int, batch: int, n: int, written: bool = True) -> None:
        """Batched sparse products: ``records`` (column, symbol) records written once
        (unless ``written``: the caller counted their stores) and read with a codebook
        lookup per :data:`RECORD_COLUMNS` columns of X, ``value * X[col, :]``."""
        chunks = -(-batch // RECORD_COLUMNS)
        c.adds = c.mults = records * batch
        if written:
            c.write("records", records, 32, 4 * records)
        c.read("records", records * chunks, 32, 4 * records)
        c.read("lut", records * chunks, 32, 4 * 64)
        c.read("x", records * batch, 32, 4 * n * batch)

    def _native(self):
        """The native kernel object (built on first use), or None."""
        if self.omega.shape[0] > NATIVE_MAX_SYMBOLS or self.shape[1] >= 1 << 24:
            return None  # records pack a column in 24 bits
        return self._cached_kernel(self._new_kernel)

    @abstractmethod
    def _numba_matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        """``_matvec`` on the numba kernels."""

    @abstractmethod
    def _numba_matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        """``_matmul`` on the numba kernels."""

    @abstractmethod
    def _numba_to_dense(self, out: np.ndarray) -> None:
        """Decode into the zero-filled ``out`` on the numba kernels."""

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=np.float32)
        if out.size:
            kern = self._native()
            if kern is not None:
                kern.decode_rows(0, self.shape[0], out)
            else:
                self._numba_to_dense(out)
        return out

    def fused_rows(self, batch: int):
        if self._sparse_products or batch <= DENSE_FUSED_MAX_BATCH:
            return self._native()
        return None

    def _matvec(self, x: np.ndarray, y: np.ndarray) -> None:
        kern = self._native()
        if kern is not None:
            kern.rows(x, y, 1, None)
        else:
            self._numba_matvec(x, y)

    def _matmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        b = X.shape[1]
        if b == 1:
            self._matvec(X[:, 0], Y[:, 0])
            return
        kern = self._native()
        if kern is None:
            self._numba_matmul(X, Y)
        elif self._sparse_products or b <= DENSE_FUSED_MAX_BATCH:
            kern.matmul(X, Y, b)
        else:
            matmul_tiles(kern.decode_rows, self.shape, X, Y)

    def _rmatmul(self, X: np.ndarray, Y: np.ndarray) -> None:
        b = X.shape[0]
        kern = self._native()
        if kern is None or b == 1:
            super()._rmatmul(X, Y)
        elif self._sparse_products or b <= DENSE_FUSED_MAX_BATCH:
            kern.rows(X, Y, b, None)
        else:
            rmatmul_tiles(kern.decode_rows, self.shape, X, Y)
