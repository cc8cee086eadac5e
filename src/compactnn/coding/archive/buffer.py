"""The archive buffer: one self-describing ``uint8`` array per matrix, whose first
header field (``version``) names the coder that wrote it (:mod:`.ans`: version 1,
:mod:`.adaptive`: versions 2 and 3); the header, its bounds check and the error type.

Versions 1 and 2 start with five little-endian uint32 fields (``HEADER`` bytes);
version 3 with the byte 3 and three LEB128 varints (``nnz``, ``values``, ``period``,
each in its shortest form, at most 5 bytes), its stream length implied by the buffer's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Archive", "ArchiveError", "VERSION", "VERSIONS", "CODERS", "HEADER", "COMPACT",
           "MAX_ELEMENTS", "header", "field", "varints"]

VERSION = 1  # the static ANS coder
VERSIONS = (1, 2, 3)
CODERS = {1: "ans", 2: "adaptive", 3: "adaptive"}
HEADER = 20  # bytes: five little-endian uint32 fields (versions 1 and 2)
COMPACT = 3  # the version with the varint header
MAX_ELEMENTS = 2**31  # positions are int64: gaps < m*n keep every partial sum exact


class ArchiveError(ValueError):
    """An archive buffer or its attributes are inconsistent."""


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
        (version 1) or period and bytes (versions 2 and 3; version 3 adds ``offset``,
        the header's length)."""
        return header(self.buffer)

    @property
    def coder(self) -> str:
        """``"ans"`` (version 1) or ``"adaptive"`` (versions 2 and 3)."""
        return CODERS.get(self.attrs["version"], "unknown")


_NAMES = {1: ("version", "nnz", "values", "gap_symbols", "words"),
          2: ("version", "nnz", "values", "period", "bytes")}


def varints(values: list[int]) -> bytes:
    """The LEB128 encoding of non-negative ints below 2**32, each in its shortest form."""
    out = bytearray()
    for v in values:
        if not 0 <= v < 2**32:
            raise ValueError(f"varint field {v} is outside [0, 2**32)")
        while v >= 128:
            out.append(v & 127 | 128)
            v >>= 7
        out.append(v)
    return bytes(out)


def _compact(buffer: np.ndarray) -> dict[str, int]:
    """The version 3 header: the byte 3, then nnz, values and period as varints."""
    raw = buffer[:1 + 3 * 5].tobytes()
    pos, out = 1, []
    for name in ("nnz", "values", "period"):
        v = shift = 0
        while True:
            if pos >= len(raw):
                raise ArchiveError(f"archive: buffer of {buffer.size} bytes is shorter than "
                                   "its header")
            b = raw[pos]
            pos += 1
            v |= (b & 127) << shift
            shift += 7
            if not b & 128:
                break
            if shift >= 35:
                raise ArchiveError(f"archive: header field {name!r} is too long")
        if v >= 2**32 or varints([v]) != raw[pos - (shift // 7):pos]:
            raise ArchiveError(f"archive: header field {name!r} is not a shortest varint "
                               "below 2**32")
        out.append(v)
    return {"version": COMPACT, "nnz": out[0], "values": out[1], "period": out[2],
            "bytes": max(0, buffer.size - pos - 4 * out[1]), "offset": pos}


def header(buffer: np.ndarray) -> dict[str, int]:
    """The header fields of a buffer by name (version 1 names for an unknown version)."""
    if not isinstance(buffer, np.ndarray) or buffer.dtype != np.uint8 or buffer.ndim != 1:
        raise ArchiveError("archive: buffer must be a 1-D uint8 array")
    if buffer.size and buffer[0] == COMPACT:
        return _compact(buffer)
    if buffer.size < HEADER:
        raise ArchiveError(f"archive: buffer of {buffer.size} bytes is shorter than its header")
    fields = np.frombuffer(buffer[:HEADER].tobytes(), "<u4")
    names = _NAMES.get(int(fields[0]), _NAMES[1])
    return {k: int(v) for k, v in zip(names, fields, strict=True)}


def check_codebook(omega: np.ndarray) -> None:
    """Refuse a stored codebook holding NaN, Inf or +0.0 (zeros are never stored)."""
    if not np.isfinite(omega).all():
        raise ArchiveError("archive: codebook has NaN or Inf")
    if np.any(omega.view(np.uint32) == 0):
        raise ArchiveError("archive: codebook contains +0.0, which is never stored")


def field(attrs: dict[str, int], name: str, hi: int) -> int:
    """Header field ``name``, checked to lie in ``[0, hi]``."""
    v = attrs[name]
    if not 0 <= v <= hi:
        raise ArchiveError(f"archive: header field {name!r} is {v}, outside [0, {hi}]")
    return v
