"""The archive buffer: one self-describing ``uint8`` array per matrix, whose first
header field (``version``) names the coder that wrote it (:mod:`.ans`: version 1,
:mod:`.adaptive`: version 2); the header, its bounds check and the error type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Archive", "ArchiveError", "VERSION", "VERSIONS", "CODERS", "HEADER", "MAX_ELEMENTS",
           "header", "field"]

VERSION = 1  # the static ANS coder
VERSIONS = (1, 2)
CODERS = {1: "ans", 2: "adaptive"}
HEADER = 20  # bytes: five little-endian uint32 fields
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
        (version 1) or period and bytes (version 2)."""
        return header(self.buffer)

    @property
    def coder(self) -> str:
        """``"ans"`` (version 1) or ``"adaptive"`` (version 2)."""
        return CODERS.get(self.attrs["version"], "unknown")


_NAMES = {1: ("version", "nnz", "values", "gap_symbols", "words"),
          2: ("version", "nnz", "values", "period", "bytes")}


def header(buffer: np.ndarray) -> dict[str, int]:
    """The header fields of a buffer by name (version 1 names for an unknown version)."""
    if not isinstance(buffer, np.ndarray) or buffer.dtype != np.uint8 or buffer.ndim != 1:
        raise ArchiveError("archive: buffer must be a 1-D uint8 array")
    if buffer.size < HEADER:
        raise ArchiveError(f"archive: buffer of {buffer.size} bytes is shorter than its header")
    fields = np.frombuffer(buffer[:HEADER].tobytes(), "<u4")
    names = _NAMES.get(int(fields[0]), _NAMES[1])
    return {k: int(v) for k, v in zip(names, fields, strict=True)}


def field(attrs: dict[str, int], name: str, hi: int) -> int:
    """Header field ``name``, checked to lie in ``[0, hi]``."""
    v = attrs[name]
    if not 0 <= v <= hi:
        raise ArchiveError(f"archive: header field {name!r} is {v}, outside [0, {hi}]")
    return v
