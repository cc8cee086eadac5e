"""Context-mixing binary arithmetic coding of float32 bit patterns.

**Float32 bit patterns** (:func:`encode_floats`, for biases and other plain
tensors): per value, the 8 exponent bits (bisection tree, models by node and by node
and the previous value's exponent), the sign (by exponent), the top 4 mantissa bits
(tree, by node and by node and exponent) and the 19 others (by bit position), each
bit mixed from its two models and a bias.

The coder, the adaptive models and the mixer are :mod:`compactnn.coding.adaptive.mixing`.
"""

from __future__ import annotations

import numpy as np

from compactnn.coding.adaptive.mixing import (
    STRETCH,
    code_bit,
    finish,
    mix,
    p12,
    sm_update,
    start,
    train,
)
from compactnn.kernels._jit import jit

__all__ = ["encode_floats", "decode_floats"]

_F_SETS = 14  # mixer weight sets of the float coder: 8 exponent levels, sign, 4 + 1 mantissa
_F_FINE = 65536 + 256 + 4096 + 32


@jit
def _code_floats(decoding, bits, stream):  # pragma: no cover - compiled
    """Encode ``bits`` (uint32 patterns as int64) or decode ``bits.size`` of them into
    ``bits``; returns ``(stream, bytes read)``."""
    out = np.zeros(1024 if not decoding else 1, np.uint8)
    cs = start(decoding, stream)
    a_p = np.full(1024, 32768, np.int64)
    a_n = np.zeros(1024, np.int64)
    b_p = np.full(_F_FINE, 32768, np.int64)
    b_n = np.zeros(_F_FINE, np.int64)
    w = np.full(_F_SETS * 3, 21845, np.int64)
    st = np.zeros(3, np.int64)
    prev_e = 0
    for i in range(bits.size):
        v = 0 if decoding else bits[i]
        e = 0
        node = 1
        for k in range(23):  # 8 exponent bits, sign, 4 + 19 mantissa bits
            if k < 8:
                ia = node
                ib = node * 256 + prev_e
                ws = k
                y = (v >> (30 - k)) & 1
            elif k == 8:
                ia = 256
                ib = 65536 + e
                ws = 8
                y = (v >> 31) & 1
                node = 1
            elif k < 13:
                ia = 512 + node
                ib = 65536 + 256 + e * 16 + node
                ws = k
                y = (v >> (31 - k)) & 1  # mantissa bits 22..19
            else:
                ia = 600 + k
                ib = 65536 + 256 + 4096 + k
                ws = 13
                y = 0
            if k < 13:
                st[0] = STRETCH[p12(a_p[ia])]
                st[1] = STRETCH[p12(b_p[ib])]
                st[2] = 256
                p = mix(w, ws * 3, st, 3)
                y, out = code_bit(decoding, cs, out, stream, np.int64(y), p)
                train(w, ws * 3, st, 3, y, p)
                sm_update(a_p, a_n, ia, y, 255)
                sm_update(b_p, b_n, ib, y, 255)
                if k < 8:
                    e = (e << 1) | y
                    node = 2 * node + y
                elif k == 8:
                    if decoding:
                        v = (y << 31) | (e << 23)
                else:
                    node = 2 * node + y
                    if decoding:
                        v |= y << (31 - k)
            else:  # the 19 low mantissa bits, one model per position
                for j in range(18, -1, -1):
                    ia = 600 + j
                    y = (v >> j) & 1
                    p = p12(a_p[ia])
                    y, out = code_bit(decoding, cs, out, stream, np.int64(y), p)
                    sm_update(a_p, a_n, ia, y, 1023)
                    if decoding:
                        v |= y << j
                break
        if decoding:
            bits[i] = v
        prev_e = e
    if not decoding:
        out = finish(cs, out)
    return out, cs[3]


def encode_floats(values: np.ndarray) -> np.ndarray:
    """The stream of a float32 array's bit patterns (any shape, row-major)."""
    bits = np.ascontiguousarray(values, np.float32).reshape(-1).view(np.uint32)
    stream, _ = _code_floats(False, bits.astype(np.int64), np.zeros(0, np.uint8))
    return stream


def decode_floats(stream: np.ndarray, count: int) -> tuple[np.ndarray, int]:
    """Inverse of :func:`encode_floats`: ``(count float32 values, stream bytes read)``."""
    bits = np.zeros(count, np.int64)
    _, read = _code_floats(True, bits, np.ascontiguousarray(stream, np.uint8))
    return bits.astype(np.uint32).view(np.float32), read
