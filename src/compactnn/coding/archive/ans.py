"""Version 1 of the archive (``ans``): static models and an asymmetric numeral system.

Version 1 codes the sparse structure and the values with an asymmetric numeral system
(``constriction``'s ``AnsCoder``, 32-bit words, 24-bit precision), close to their
empirical entropy:

- the entries whose float32 bit pattern is not +0.0, in row-major order, as
  ``nnz`` position gaps ``g = pos[i] - pos[i-1] - 1`` (``pos[-1] = -1``); each gap is
  split into a *gap symbol* (Elias-gamma bucket of ``g + 1`` plus its leading mantissa
  bit, coded with an empirical categorical model) and its remaining low bits
  (coded uniformly, in chunks of at most 16 bits);
- the values as indices into a codebook ``omega`` (distinct float32 bit patterns,
  most frequent first), coded with an empirical categorical model.

An alphabet with a single symbol (one distinct value, or only gap symbol 0) is implied
and not coded.

Byte layout of the single ``uint8`` buffer (little-endian)::

    header       5 x uint32      version (1), nnz, K (values), G (gap symbols), S (words)
    omega        K x float32     codebook, bit patterns, most frequent first
    value_freq   K x uint16      scaled frequencies of the value codes
    gap_freq     G x uint16      scaled frequencies of the gap symbols
    stream       S x uint32      ANS words (constriction ``get_compressed()``)

Frequencies are scaled so the largest is 65535 (a present symbol keeps at least 1);
both sides build ``Categorical(freq / freq.sum(), perfect=False)``. Gap symbol ``t``:
``t = 0`` is ``g + 1 = 1``; otherwise ``e = (t + 1) // 2`` is the bit length minus one
of ``g + 1`` and ``(t + 1) % 2`` its bit below the leading one; the remaining ``e - 1``
bits follow, most significant chunk first. The stream decodes, in order, the ``nnz``
gap symbols, the low-bit chunks, then the ``nnz`` value codes, and must end exactly.
"""

from __future__ import annotations

import numpy as np

from compactnn.coding import distinct, frequency_codebook
from compactnn.coding.archive.buffer import (
    HEADER,
    MAX_ELEMENTS,
    VERSION,
    Archive,
    ArchiveError,
    check_codebook,
    field,
)

__all__ = ["encode", "decode"]

_CHUNK = 16
_MAX_GAP_SYMBOLS = 2 * 32  # g + 1 < 2**32 >= MAX_ELEMENTS
_MAX_VALUES = 2**20
_WINDOW = 1 << 18  # symbols (or matrix entries) decoded per step: bounded temporaries


def _scaled_freq(counts: np.ndarray) -> np.ndarray:
    counts = counts.astype(np.float64)
    f = np.rint(counts / counts.max() * 65535.0) if counts.size and counts.max() > 0 else counts
    f[(counts > 0) & (f < 1)] = 1
    return f.astype("<u2")


def _categorical(freq: np.ndarray):
    import constriction

    p = freq.astype(np.float64)
    total = p.sum()
    if p.size == 0 or total <= 0:
        raise ArchiveError("archive: a frequency table is empty or all zero")
    return constriction.stream.model.Categorical(p / total, perfect=False)


def _gap_symbols(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``v = g + 1 >= 1`` into (symbol, low bits, number of low bits)."""
    e = np.zeros(v.shape, np.int64)
    nz = v > 1
    e[nz] = np.floor(np.log2(v[nz].astype(np.float64))).astype(np.int64)
    # correct floating-point rounding of log2 near powers of two
    e[nz & ((np.int64(1) << e) > v)] -= 1
    e[nz & ((np.int64(1) << (e + 1)) <= v)] += 1
    sub = np.where(e > 0, (v >> np.maximum(e - 1, 0)) & 1, 0)
    sym = np.where(e > 0, 2 * e - 1 + sub, 0)
    nlow = np.maximum(e - 1, 0)
    low = v & ((np.int64(1) << nlow) - 1)
    return sym.astype(np.int32), low, nlow


def _chunks(low: np.ndarray, nlow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low bits as (chunk value, chunk size) pairs, most significant chunk first."""
    nch = (nlow + _CHUNK - 1) // _CHUNK
    if not nch.sum():
        return np.empty(0, np.int32), np.empty(0, np.int32)
    owner = np.repeat(np.arange(nlow.size), nch)
    first = np.cumsum(nch) - nch
    k = np.arange(owner.size) - first[owner]  # chunk number within its gap, 0 = top
    top_bits = nlow[owner] - (nch[owner] - 1) * _CHUNK  # bits of the top chunk
    width = np.where(k == 0, top_bits, _CHUNK)
    shift = np.where(k == 0, nlow[owner] - top_bits, nlow[owner] - top_bits - k * _CHUNK)
    vals = (low[owner] >> shift) & ((np.int64(1) << width) - 1)
    return vals.astype(np.int32), (np.int64(1) << width).astype(np.int32)


def encode(W: np.ndarray) -> Archive | None:
    """The version 1 archive of ``W``, or ``None`` where it would not pay off (too many
    entries or distinct values)."""
    import constriction

    m, n = W.shape
    if m * n >= MAX_ELEMENTS:
        return None
    flat = np.ascontiguousarray(W, dtype=np.float32).reshape(-1)
    pos = np.flatnonzero(flat.view(np.uint32))
    vals = flat[pos]
    values = distinct(vals.view(np.uint32))  # before the codebook, which costs 10x more
    if values > _MAX_VALUES or values * 6 > max(vals.nbytes, 1):
        return None
    omega, codes, counts = frequency_codebook(vals)
    v = np.diff(pos, prepend=-1).astype(np.int64)  # g + 1
    sym, low, nlow = _gap_symbols(v)
    G = int(sym.max()) + 1 if sym.size else 0
    value_freq = _scaled_freq(counts)
    gap_freq = _scaled_freq(np.bincount(sym, minlength=G))
    coder = constriction.stream.stack.AnsCoder()
    if pos.size:
        chunk_vals, chunk_sizes = _chunks(low, nlow)
        if omega.size > 1:
            coder.encode_reverse(codes.astype(np.int32), _categorical(value_freq))
        if chunk_vals.size:
            coder.encode_reverse(chunk_vals, constriction.stream.model.Uniform(), chunk_sizes)
        if G > 1:
            coder.encode_reverse(sym, _categorical(gap_freq))
    stream = np.asarray(coder.get_compressed(), dtype="<u4")
    header = np.array([VERSION, pos.size, omega.size, G, stream.size], "<u4")
    buf = np.concatenate([
        header.view(np.uint8), omega.astype("<f4").view(np.uint8), value_freq.view(np.uint8),
        gap_freq.view(np.uint8), stream.view(np.uint8),
    ])
    return Archive(buf)


def decode(buffer: np.ndarray, attrs: dict[str, int], m: int, n: int) -> np.ndarray:
    """The dense ``(m, n)`` matrix of a version 1 buffer with header ``attrs``.

    Memory: the output, one byte per stored entry (its gap symbol) and bounded windows:
    the positions are marked in the output itself (a non-zero bit pattern) and the
    values then written over the marks in order, so no position array is ever built.
    """
    import constriction

    size = m * n
    nnz = field(attrs, "nnz", size)
    K = field(attrs, "values", min(nnz, _MAX_VALUES))
    G = field(attrs, "gap_symbols", _MAX_GAP_SYMBOLS)
    S = field(attrs, "words", buffer.size // 4)
    if (K == 0 or G == 0) and nnz:
        raise ArchiveError("archive: non-empty matrix without codebook or gap symbols")
    need = HEADER + 4 * K + 2 * K + 2 * G + 4 * S
    if buffer.size != need:
        raise ArchiveError(f"archive: buffer has {buffer.size} bytes, its header says {need}")
    o = HEADER
    omega = np.frombuffer(buffer, "<f4", K, o).astype(np.float32)
    o += 4 * K
    value_freq = np.frombuffer(buffer, "<u2", K, o).copy()
    o += 2 * K
    gap_freq = np.frombuffer(buffer, "<u2", G, o).copy()
    o += 2 * G
    words = np.frombuffer(buffer, "<u4", S, o).astype(np.uint32)
    check_codebook(omega)
    out = np.zeros(size, np.float32)
    if nnz == 0:
        if S:
            raise ArchiveError("archive: stream has data but the matrix is empty")
        return out.reshape(m, n)
    if S and words[-1] == 0:
        raise ArchiveError("archive: stream is not properly terminated")
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        del words
        sym = _decode_gap_symbols(coder, gap_freq, G, nnz)
        _mark_positions(coder, sym, out.view(np.uint32), size)
        del sym
        _write_values(coder, value_freq, omega, out.view(np.uint32), nnz)
        if not coder.is_empty():
            raise ArchiveError("archive: stream has trailing data")
    except ArchiveError:
        raise
    except Exception as exc:  # constriction reports corrupt streams as generic errors
        raise ArchiveError(f"archive: corrupt stream ({exc})") from None
    return out.reshape(m, n)


def _decode_gap_symbols(coder, gap_freq: np.ndarray, G: int, nnz: int) -> np.ndarray:
    """The ``nnz`` gap symbols (uint8: at most 63 after the range check)."""
    sym = np.zeros(nnz, np.uint8)
    if G > 1:
        model = _categorical(gap_freq)
        for c0 in range(0, nnz, _WINDOW):
            s = np.asarray(coder.decode(model, min(_WINDOW, nnz - c0)))
            if s.size and int(s.max()) >= 63:
                raise ArchiveError("archive: gap symbol out of range")
            sym[c0:c0 + s.size] = s
    return sym


def _mark_positions(coder, sym: np.ndarray, marks: np.ndarray, size: int) -> None:
    """Decode the low bits of the gaps window by window and set ``marks[pos] = 1`` at
    every stored position (strictly increasing, checked against ``size``)."""
    import constriction

    uniform = constriction.stream.model.Uniform()
    nnz, nxt = sym.size, 0  # nxt: first position the next entry may take
    for c0 in range(0, nnz, _WINDOW):
        s = sym[c0:c0 + _WINDOW].astype(np.int64)
        e = (s + 1) // 2
        nlow = np.maximum(e - 1, 0)
        nch = (nlow + _CHUNK - 1) // _CHUNK
        v = np.where(e > 0, (np.int64(1) << e) | (((s + 1) % 2) << np.maximum(e - 1, 0)), 1)
        total = int(nch.sum())
        if total:
            owner = np.repeat(np.arange(s.size), nch)
            first = np.cumsum(nch) - nch
            k = np.arange(total) - first[owner]
            top_bits = nlow[owner] - (nch[owner] - 1) * _CHUNK
            width = np.where(k == 0, top_bits, _CHUNK)
            chunk_vals = np.asarray(coder.decode(
                uniform, (np.int64(1) << width).astype(np.int32)), np.int64)
            shift = np.where(k == 0, nlow[owner] - top_bits, nlow[owner] - top_bits - k * _CHUNK)
            np.add.at(v, owner, chunk_vals << shift)
        if np.any(v > size):
            raise ArchiveError("archive: position gap beyond the end of the matrix")
        pos = np.cumsum(v) + (nxt - 1)
        if pos[-1] >= size:
            raise ArchiveError(
                f"archive: position {int(pos[-1])} beyond the matrix ({size} entries)")
        marks[pos] = 1
        nxt = int(pos[-1]) + 1


def _write_values(coder, value_freq: np.ndarray, omega: np.ndarray, out: np.ndarray,
                  nnz: int) -> None:
    """Decode the value codes and write them over the marks, in position order."""
    bits = omega.view(np.uint32)
    model = _categorical(value_freq) if omega.size > 1 else None
    done = 0
    for w0 in range(0, out.size, _WINDOW):
        if done == nnz:
            break
        window = out[w0:w0 + _WINDOW]
        idx = np.flatnonzero(window)
        if not idx.size:
            continue
        if model is None:
            window[idx] = bits[0]
        else:
            window[idx] = bits[np.asarray(coder.decode(model, idx.size), np.int64)]
        done += idx.size
