"""Versions 2 and 3 of the archive (``adaptive``): context-mixing binary arithmetic
coding (:mod:`compactnn.coding.adaptive`), for codebooks of at most 256 values and
matrices of at most ``ADAPTIVE_MAX_DECISIONS`` coded decisions (larger ones would take
seconds; they use version 1). Version 3 (written since issue 15) differs only by its
header, 14 bytes shorter for a small matrix; version 2 buffers are still read.

Layouts (little-endian)::

    version 2    5 x uint32      version (2), nnz, K (values), period, B (stream bytes)
    version 3    u8 3, then nnz, K, period as LEB128 varints (shortest form);
                                 B = the bytes after the codebook
    omega        K x float32     codebook, bit patterns, strictly increasing as floats
    stream       B x uint8       the adaptive coder's stream

The significance map (bit pattern not +0.0) and the value indices are coded together
(:func:`compactnn.coding.encode_matrix`); ``period`` (``>= 2``) is the
distance along a row of the extra "upper" neighbour the contexts use (the image
width for a layer whose inputs are flattened images), chosen by the encoder as the
distance whose neighbour best predicts an entry's significance. The decoder must
find exactly ``nnz`` significant entries and read exactly ``B`` bytes.
"""

from __future__ import annotations

import numpy as np

from compactnn.coding.adaptive import MAX_VALUES, decode_matrix, encode_matrix
from compactnn.coding.archive.buffer import (
    COMPACT,
    HEADER,
    Archive,
    ArchiveError,
    check_codebook,
    field,
    varints,
)
from compactnn.kernels._jit import jit

__all__ = ["encode", "decode", "ADAPTIVE_MAX_DECISIONS"]

ADAPTIVE_MAX_DECISIONS = 2**24  # about a second of coding; larger matrices use version 1
_MAX_PERIOD = 256
_PERIOD_SAMPLE = 2**18  # entries looked at to choose the period


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


def encode(W: np.ndarray) -> Archive | None:
    """The version 3 archive of ``W``, or ``None`` where the adaptive coder does not apply
    (non-finite values, more than 256 values, too many decisions)."""
    flat = np.ascontiguousarray(W, dtype=np.float32).reshape(-1)
    bits = flat.view(np.uint32)
    sig = bits != 0
    vals = flat[sig]
    if not np.isfinite(vals).all():
        return None
    omega, vidx = np.unique(vals, return_inverse=True)  # -0.0 and +0.0: only -0.0 occurs
    K = int(omega.size)
    if K > MAX_VALUES or flat.size + vals.size * 8 > ADAPTIVE_MAX_DECISIONS:
        return None
    sig2 = sig.reshape(W.shape).astype(np.uint8)
    period = _period(sig2)
    stream = (encode_matrix(sig2, vidx.reshape(-1), K, period) if K
              else np.zeros(0, np.uint8))
    header = np.frombuffer(bytes([COMPACT]) + varints([vals.size, K, period]), np.uint8)
    return Archive(np.concatenate([header, omega.astype("<f4").view(np.uint8), stream]))


def decode(buffer: np.ndarray, attrs: dict[str, int], m: int, n: int) -> np.ndarray:
    """The dense ``(m, n)`` matrix of a version 2 or 3 buffer with header ``attrs``."""
    size = m * n
    nnz = field(attrs, "nnz", size)
    K = field(attrs, "values", min(nnz, MAX_VALUES))
    period = field(attrs, "period", max(2, min(n - 1, _MAX_PERIOD)))
    B = field(attrs, "bytes", buffer.size)
    if period < 2:
        raise ArchiveError(f"archive: period {period} is below 2")
    if (K == 0) != (nnz == 0):
        raise ArchiveError("archive: codebook size and entry count disagree")
    if size + nnz * 8 > ADAPTIVE_MAX_DECISIONS:
        raise ArchiveError(f"archive: a {m}x{n} matrix is too large for the adaptive coder")
    start = attrs.get("offset", HEADER)  # version 3: its varint header's length
    need = start + 4 * K + B
    if buffer.size != need:
        raise ArchiveError(f"archive: buffer has {buffer.size} bytes, its header says {need}")
    omega = np.frombuffer(buffer, "<f4", K, start).astype(np.float32)
    check_codebook(omega)
    if K > 1 and not np.all(omega[1:] > omega[:-1]):
        raise ArchiveError("archive: codebook is not strictly increasing")
    out = np.zeros(size, np.float32)
    if nnz == 0:
        if B:
            raise ArchiveError("archive: stream has data but the matrix is empty")
        return out.reshape(m, n)
    try:
        sig, vidx, read = decode_matrix(buffer[start + 4 * K:], m, n, nnz, K, period)
    except ValueError as exc:
        raise ArchiveError(f"archive: corrupt stream ({exc})") from None
    if read != B:
        raise ArchiveError(f"archive: the decoder read {read} of the stream's {B} bytes")
    out[sig.view(bool)] = omega[vidx]  # sig holds 0/1 bytes: a view, not a copy
    return out.reshape(m, n)
