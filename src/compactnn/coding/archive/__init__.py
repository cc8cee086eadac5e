"""``archive``: a storage-only, near-entropy encoding of one weight matrix.

A matrix stored as an archive is decoded at load into a runtime format (which then
runs the products); the archive itself has no kernels. Two coders exist; the first
header field (``version``) records which one a buffer uses, and :func:`encode` keeps
the smaller:

- version 1, ``ans``: static models, asymmetric numeral system (below);
- versions 2 and 3, ``adaptive`` (3: the same with a varint header, written now):
  context-mixing binary arithmetic coding
  (:mod:`compactnn.coding.adaptive`), for codebooks of at most 256 values and
  matrices of at most ``ADAPTIVE_MAX_DECISIONS`` coded decisions (larger ones would
  take seconds; they use version 1).

Byte layouts: :mod:`.ans` (version 1), :mod:`.adaptive` (versions 2 and 3); the header and
the error type: :mod:`.buffer`.
"""

from __future__ import annotations

import numpy as np

from compactnn.coding.archive import adaptive, ans
from compactnn.coding.archive.adaptive import ADAPTIVE_MAX_DECISIONS
from compactnn.coding.archive.buffer import (
    CODERS,
    MAX_ELEMENTS,
    VERSION,
    VERSIONS,
    Archive,
    ArchiveError,
    header,
)

__all__ = ["Archive", "ArchiveError", "encode", "decode", "VERSION", "VERSIONS", "CODERS",
           "ADAPTIVE_MAX_DECISIONS"]


def encode(W: np.ndarray, coder: str | None = None) -> Archive | None:
    """Encode a float32 matrix; ``None`` if it is too large or has too many distinct
    values for an archive to pay off (then store the runtime format as is).

    ``coder``: ``"ans"`` (version 1), ``"adaptive"`` (version 3; ``None`` where it does
    not apply) or ``None``: the one giving the smaller buffer.
    """
    if coder not in (None, "ans", "adaptive"):
        raise ValueError(f"unknown archive coder {coder!r}; use 'ans' or 'adaptive'")
    a1 = ans.encode(W)
    if a1 is None or coder == "ans":
        return a1
    a2 = adaptive.encode(W)
    if coder == "adaptive" or (a2 is not None and a2.nbytes < a1.nbytes):
        return a2
    return a1


def decode(buffer: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Decode an archive into the dense float32 ``shape`` matrix it encodes.

    Every length is checked against the buffer and ``shape`` before anything is
    allocated; raises ``ArchiveError`` naming the first inconsistency. Memory: the
    output and bounded temporaries (see each coder's ``decode``).
    """
    attrs = header(buffer)
    if attrs["version"] not in VERSIONS:
        raise ArchiveError(f"archive: unsupported version {attrs['version']}")
    m, n = shape
    size = m * n
    if size >= MAX_ELEMENTS:
        raise ArchiveError(f"archive: shape {shape} is too large for an archive")
    if attrs["version"] in (2, 3):
        return adaptive.decode(buffer, attrs, m, n)
    return ans.decode(buffer, attrs, m, n)
