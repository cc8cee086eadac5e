"""Context-mixing binary arithmetic coders (DeepCABAC / PAQ style), integer arithmetic
with one numba function per kind and a ``decoding`` flag, so both sides run the same
model updates:

- :mod:`.matrix`: a sparse quantised matrix (significance map + value indices), used by
  the archive's version 2 (:mod:`compactnn.coding.archive`);
- :mod:`.floats`: float32 bit patterns (biases and other plain tensors of packed files);
- :mod:`.mixing`: the binary arithmetic coder, adaptive bit models and logistic mixer
  both are built from.
"""

from compactnn.coding.adaptive.floats import decode_floats, encode_floats
from compactnn.coding.adaptive.matrix import MAX_VALUES, decode_matrix, encode_matrix

__all__ = ["encode_matrix", "decode_matrix", "encode_floats", "decode_floats", "MAX_VALUES"]
