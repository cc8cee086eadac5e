"""Lossless compact matrix formats, registered by id.

>>> import numpy as np
>>> from compactnn import formats
>>> W = np.array([[0, 1.5], [1.5, 0]], np.float32)
>>> M = formats.get("csr").from_dense(W)
>>> M.matvec(np.ones(2, np.float32)).tolist()
[1.5, 1.5]
"""

from compactnn.formats.base import CompactMatrix, Cost
from compactnn.formats.checks import FormatError
from compactnn.formats.dtypes import index_dtype
from compactnn.formats.registry import available, get, register, registered

# Importing a format module registers it; order here is the order of ``available()``.
from compactnn.formats import dense, csr, index_map, cer, cser, ham, sham, permseq, blockdiag, lossless_float, packed_codes, compact_blocks  # noqa: E402,F401,E501  isort: skip

__all__ = [
    "CompactMatrix",
    "Cost",
    "FormatError",
    "available",
    "get",
    "index_dtype",
    "register",
    "registered",
]
