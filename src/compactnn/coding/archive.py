"""``archive``: a storage-only, near-entropy encoding of one weight matrix.

A matrix stored as an archive is decoded at load into a runtime format (which then
runs the products); the archive itself has no kernels. Two coders exist; the first
header field (``version``) records which one a buffer uses, and :func:`encode` keeps
the smaller:

- version 1, ``ans``: static models, asymmetric numeral system (below);
- version 2, ``adaptive``: context-mixing binary arithmetic coding
  (:mod:`compactnn.coding.adaptive`), for codebooks of at most 256 values and
  matrices of at most ``ADAPTIVE_MAX_DECISIONS`` coded decisions (larger ones would
  take seconds; they use version 1).

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

Version 2 layout (little-endian)::

    header       5 x uint32      version (2), nnz, K (values), period, B (stream bytes)
    omega        K x float32     codebook, bit patterns, strictly increasing as floats
    stream       B x uint8       the adaptive coder's stream

The significance map (bit pattern not +0.0) and the value indices are coded together
(:func:`compactnn.coding.adaptive.encode_matrix`); ``period`` (``>= 2``) is the
distance along a row of the extra "upper" neighbour the contexts use (the image
width for a layer whose inputs are flattened images), chosen by the encoder as the
distance whose neighbour best predicts an entry's significance. The decoder must
find exactly ``nnz`` significant entries and read exactly ``B`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compactnn.coding import adaptive, frequency_codebook
from compactnn.kernels._jit import jit

__all__ = ["Archive", "ArchiveError", "encode", "decode", "VERSION", "VERSIONS", "CODERS",
           "ADAPTIVE_MAX_DECISIONS"]

VERSION = 1  # the static ANS coder
VERSIONS = (1, 2)
CODERS = {1: "ans", 2: "adaptive"}
ADAPTIVE_MAX_DECISIONS = 2**24  # about a second of coding; larger matrices use version 1
_MAX_PERIOD = 256
_PERIOD_SAMPLE = 2**18  # entries looked at to choose the period
_CHUNK = 16
_MAX_ELEMENTS = 2**31  # positions are int64: gaps < m*n keep every partial sum exact
_MAX_GAP_SYMBOLS = 2 * 32  # g + 1 < 2**32 >= _MAX_ELEMENTS
_MAX_VALUES = 2**20


class ArchiveError(ValueError):
    """An archive buffer or its attributes are inconsistent."""


_HEADER = 20


@dataclass(frozen=True)
class Archive:
    """The encoded buffer of one matrix (self-describing: it starts with its header)."""

    buffer: np.ndarray

    @property
    def nbytes(self) -> int:
        """Stored bytes of the buffer."""
        return int(self.buffer.nbytes)

    @property
    def attrs(self) -> dict[str, int]:
        """The header fields: version, nnz, values, then gap_symbols and words
        (version 1) or period and bytes (version 2)."""
        return _header(self.buffer)

    @property
    def coder(self) -> str:
        """``"ans"`` (version 1) or ``"adaptive"`` (version 2)."""
        return CODERS.get(self.attrs["version"], "unknown")


_NAMES = {1: ("version", "nnz", "values", "gap_symbols", "words"),
          2: ("version", "nnz", "values", "period", "bytes")}


def _header(buffer: np.ndarray) -> dict[str, int]:
    if not isinstance(buffer, np.ndarray) or buffer.dtype != np.uint8 or buffer.ndim != 1:
        raise ArchiveError("archive: buffer must be a 1-D uint8 array")
    if buffer.size < _HEADER:
        raise ArchiveError(f"archive: buffer of {buffer.size} bytes is shorter than its header")
    fields = np.frombuffer(buffer[:_HEADER].tobytes(), "<u4")
    names = _NAMES.get(int(fields[0]), _NAMES[1])
    return {k: int(v) for k, v in zip(names, fields, strict=True)}


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


def encode(W: np.ndarray, coder: str | None = None) -> Archive | None:
    """Encode a float32 matrix; ``None`` if it is too large or has too many distinct
    values for an archive to pay off (then store the runtime format as is).

    ``coder``: ``"ans"`` (version 1), ``"adaptive"`` (version 2; ``None`` where it does
    not apply) or ``None``: the one giving the smaller buffer.
    """
    if coder not in (None, "ans", "adaptive"):
        raise ValueError(f"unknown archive coder {coder!r}; use 'ans' or 'adaptive'")
    a1 = _encode_ans(W)
    if a1 is None or coder == "ans":
        return a1
    a2 = _encode_adaptive(W)
    if coder == "adaptive" or (a2 is not None and a2.nbytes < a1.nbytes):
        return a2
    return a1


@jit
def _period_costs(sig, dmax):  # pragma: no cover - compiled
    """Per distance ``d`` in ``[2, dmax]``: the plug-in conditional entropy (bits) of
    an entry's significance given the entry ``d`` to its left, over the entries of
    columns ``>= dmax`` (the same entries for every ``d``). Costs O(nnz * dmax)."""
    m, n = sig.shape
    both = np.zeros(dmax + 1, np.int64)  # entry and its d-left neighbour significant
    colsum = np.zeros(n + 1, np.int64)
    for r in range(m):
        for j in range(n):
            if sig[r, j]:
                colsum[j + 1] += 1
                if j >= dmax:
                    for d in range(2, dmax + 1):
                        both[d] += sig[r, j - d]
    prefix = np.cumsum(colsum)  # prefix[c]: significant entries in columns < c
    total = m * (n - dmax)
    ones = prefix[n] - prefix[dmax]
    out = np.full(dmax + 1, np.inf)
    for d in range(2, dmax + 1):
        left = prefix[n - d] - prefix[dmax - d]  # neighbours that are significant
        c = np.array([[total - left - ones + both[d], ones - both[d]],
                      [left - both[d], both[d]]], np.int64)
        h = 0.0
        for a in range(2):
            t = c[a, 0] + c[a, 1]
            for b in range(2):
                if c[a, b]:
                    h -= c[a, b] * np.log2(c[a, b] / t)
        out[d] = h
    return out


def _period(sig: np.ndarray) -> int:
    """The row distance whose neighbour best predicts significance (2 if none helps)."""
    dmax = min(sig.shape[1] // 2, _MAX_PERIOD)  # half the row to compare on
    if dmax < 3:
        return 2
    rows = max(1, _PERIOD_SAMPLE // sig.shape[1])  # the first rows suffice to find it
    return int(np.argmin(_period_costs(sig[:rows], dmax)))


def _encode_adaptive(W: np.ndarray) -> Archive | None:
    flat = np.ascontiguousarray(W, dtype=np.float32).reshape(-1)
    bits = flat.view(np.uint32)
    sig = bits != 0
    vals = flat[sig]
    if not np.isfinite(vals).all():
        return None
    omega, vidx = np.unique(vals, return_inverse=True)  # -0.0 and +0.0: only -0.0 occurs
    K = int(omega.size)
    if K > adaptive.MAX_VALUES or flat.size + vals.size * 8 > ADAPTIVE_MAX_DECISIONS:
        return None
    sig2 = sig.reshape(W.shape).astype(np.uint8)
    period = _period(sig2)
    stream = (adaptive.encode_matrix(sig2, vidx.reshape(-1), K, period) if K
              else np.zeros(0, np.uint8))
    header = np.array([2, vals.size, K, period, stream.size], "<u4")
    return Archive(np.concatenate([header.view(np.uint8), omega.astype("<f4").view(np.uint8),
                                   stream]))


def _encode_ans(W: np.ndarray) -> Archive | None:
    import constriction

    m, n = W.shape
    if m * n >= _MAX_ELEMENTS:
        return None
    flat = np.ascontiguousarray(W, dtype=np.float32).reshape(-1)
    pos = np.flatnonzero(flat.view(np.uint32))
    vals = flat[pos]
    omega, codes, counts = frequency_codebook(vals)
    if omega.size > _MAX_VALUES or omega.size * 6 > max(vals.nbytes, 1):
        return None
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


def _field(attrs: dict[str, int], name: str, hi: int) -> int:
    v = attrs[name]
    if not 0 <= v <= hi:
        raise ArchiveError(f"archive: header field {name!r} is {v}, outside [0, {hi}]")
    return v


_WINDOW = 1 << 18  # symbols (or matrix entries) decoded per step: bounded temporaries


def decode(buffer: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Decode an archive into the dense float32 ``shape`` matrix it encodes.

    Every length is checked against the buffer and ``shape`` before anything is
    allocated; raises ``ArchiveError`` naming the first inconsistency. Memory: the
    output, one byte per stored entry (its gap symbol) and bounded windows: the
    positions are marked in the output itself (a non-zero bit pattern) and the values
    then written over the marks in order, so no position array is ever built.
    """
    import constriction

    attrs = _header(buffer)
    if attrs["version"] not in VERSIONS:
        raise ArchiveError(f"archive: unsupported version {attrs['version']}")
    m, n = shape
    size = m * n
    if size >= _MAX_ELEMENTS:
        raise ArchiveError(f"archive: shape {shape} is too large for an archive")
    if attrs["version"] == 2:
        return _decode_adaptive(buffer, attrs, m, n)
    nnz = _field(attrs, "nnz", size)
    K = _field(attrs, "values", min(nnz, _MAX_VALUES))
    G = _field(attrs, "gap_symbols", _MAX_GAP_SYMBOLS)
    S = _field(attrs, "words", buffer.size // 4)
    if (K == 0 or G == 0) and nnz:
        raise ArchiveError("archive: non-empty matrix without codebook or gap symbols")
    need = _HEADER + 4 * K + 2 * K + 2 * G + 4 * S
    if buffer.size != need:
        raise ArchiveError(f"archive: buffer has {buffer.size} bytes, its header says {need}")
    o = _HEADER
    omega = np.frombuffer(buffer, "<f4", K, o).astype(np.float32)
    o += 4 * K
    value_freq = np.frombuffer(buffer, "<u2", K, o).copy()
    o += 2 * K
    gap_freq = np.frombuffer(buffer, "<u2", G, o).copy()
    o += 2 * G
    words = np.frombuffer(buffer, "<u4", S, o).astype(np.uint32)
    if K and not np.isfinite(omega).all():
        raise ArchiveError("archive: codebook has NaN or Inf")
    if np.any(omega.view(np.uint32) == 0):
        raise ArchiveError("archive: codebook contains +0.0, which is never stored")
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


def _decode_adaptive(buffer: np.ndarray, attrs: dict[str, int], m: int, n: int) -> np.ndarray:
    size = m * n
    nnz = _field(attrs, "nnz", size)
    K = _field(attrs, "values", min(nnz, adaptive.MAX_VALUES))
    period = _field(attrs, "period", max(2, min(n - 1, _MAX_PERIOD)))
    B = _field(attrs, "bytes", buffer.size)
    if period < 2:
        raise ArchiveError(f"archive: period {period} is below 2")
    if (K == 0) != (nnz == 0):
        raise ArchiveError("archive: codebook size and entry count disagree")
    if size + nnz * 8 > ADAPTIVE_MAX_DECISIONS:
        raise ArchiveError(f"archive: a {m}x{n} matrix is too large for the adaptive coder")
    need = _HEADER + 4 * K + B
    if buffer.size != need:
        raise ArchiveError(f"archive: buffer has {buffer.size} bytes, its header says {need}")
    omega = np.frombuffer(buffer, "<f4", K, _HEADER).astype(np.float32)
    if not np.isfinite(omega).all():
        raise ArchiveError("archive: codebook has NaN or Inf")
    if np.any(omega.view(np.uint32) == 0):
        raise ArchiveError("archive: codebook contains +0.0, which is never stored")
    if K > 1 and not np.all(omega[1:] > omega[:-1]):
        raise ArchiveError("archive: codebook is not strictly increasing")
    out = np.zeros(size, np.float32)
    if nnz == 0:
        if B:
            raise ArchiveError("archive: stream has data but the matrix is empty")
        return out.reshape(m, n)
    try:
        sig, vidx, read = adaptive.decode_matrix(buffer[_HEADER + 4 * K:], m, n, nnz, K, period)
    except ValueError as exc:
        raise ArchiveError(f"archive: corrupt stream ({exc})") from None
    if read != B:
        raise ArchiveError(f"archive: the decoder read {read} of the stream's {B} bytes")
    out[sig.view(bool)] = omega[vidx]  # sig holds 0/1 bytes: a view, not a copy
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
