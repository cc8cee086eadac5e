"""The binary arithmetic coder, the adaptive bit models and the logistic mixer that
both adaptive coders (:mod:`.matrix`, :mod:`.floats`) are built from: numba helpers
inlined into their coding loops. Everything is integer arithmetic, so encoder and
decoder make identical predictions on every machine.

**Coder**: carry-less 32-bit binary arithmetic coder (``x1``/``x2`` interval, bytes
shifted out while the top bytes agree); each bit costs its 12-bit probability
``p = P(bit = 1)`` in ``[1, 4095]``; the encoder flushes the 4 bytes of ``x1``; the
decoder reads bytes past the end as 0.

**Adaptive model** (:func:`sm_update`): per context a 16-bit probability and a count ``n``;
after a bit ``y`` the probability moves by ``(y - p) * 2 / (2n + 3)`` and ``n`` grows up
to a per-model limit (a frequency count early, exponential forgetting later).

**Mixer**: the models' probabilities are mapped to the logistic domain
(``stretch``, ±2047 = ±8 nats), combined with one of several weight vectors
(selected by a small context), squashed back to 12 bits, and the weights are
trained online on the coding error.
"""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import inline

__all__ = ["STRETCH", "p12", "sm_update", "mix", "train", "code_bit", "start", "finish"]

_SQUASH_KNOTS = np.array([1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546,
                          2047, 2549, 2994, 3348, 3607, 3785, 3901, 3975, 4024, 4050, 4068,
                          4079, 4085, 4089, 4092, 4093, 4094], np.int64)


def _squash_py(d: int) -> int:
    if d > 2047:
        return 4095
    if d < -2047:
        return 1
    w = d & 127
    i = (d >> 7) + 16
    return int((_SQUASH_KNOTS[i] * (128 - w) + _SQUASH_KNOTS[i + 1] * w + 64) >> 7)


_SQUASH = np.array([_squash_py(d) for d in range(-2048, 2048)], np.int64)  # index d + 2048


def _stretch_table() -> np.ndarray:
    t = np.zeros(4096, np.int64)
    pi = 0
    for x in range(-2047, 2048):
        v = _squash_py(x)
        for i in range(pi, v + 1):
            t[i] = x
        pi = v + 1
    t[pi:] = 2047
    return t


STRETCH = _stretch_table()  # 12-bit probability -> logistic domain (±2047)
_RECIP = np.array([131072 // (2 * n + 3) for n in range(1024)], np.int64)  # 2^16 * 2/(2n+3)

_LR = 16  # mixer learning rate (2..28 tried on LeNet-300-100: within 2%)


@inline
def _squash(d):  # pragma: no cover - compiled
    if d > 2047:
        d = 2047
    if d < -2047:
        d = -2047
    return _SQUASH[d + 2048]


@inline
def p12(p16):  # pragma: no cover - compiled
    """A model's 16-bit probability as the coder's 12 bits, in ``[1, 4095]``."""
    p = p16 >> 4
    if p < 1:
        p = 1
    if p > 4095:
        p = 4095
    return p


@inline
def sm_update(prob, cnt, i, y, limit):  # pragma: no cover - compiled
    """Move model ``i``'s probability towards bit ``y`` by ``2 / (2n + 3)``; its count
    ``n`` grows up to ``limit``."""
    n = cnt[i]
    prob[i] += (((y << 16) - prob[i]) * _RECIP[n]) >> 16
    if n < limit:
        cnt[i] = n + 1


@inline
def mix(w, base, st, k):  # pragma: no cover - compiled
    """The mixed 12-bit probability of ``k`` stretched inputs ``st`` with weights
    ``w[base:base + k]``."""
    dot = 0
    for j in range(k):
        dot += w[base + j] * st[j]
    return _squash(dot >> 16)


@inline
def train(w, base, st, k, y, p):  # pragma: no cover - compiled
    """Train the weights ``w[base:base + k]`` on the coding error of bit ``y``."""
    err = ((y << 12) - p) * _LR
    for j in range(k):
        w[base + j] += (st[j] * err + 32768) >> 16


@inline
def _put(out, nout, byte):  # pragma: no cover - compiled
    """Append a byte, doubling the buffer when full; returns the (new) buffer."""
    if nout == out.size:
        grown = np.zeros(2 * out.size, np.uint8)
        grown[:nout] = out[:nout]
        out = grown
    out[nout] = byte
    return out


@inline
def code_bit(decoding, cs, out, stream, y, p):  # pragma: no cover - compiled
    """Code one bit with ``P(1) = p / 4096``: encode ``y``, or decode and return it.
    ``cs`` holds the coder state ``[x1, x2, x, read position, bytes written]``."""
    x1 = cs[0]
    x2 = cs[1]
    xmid = x1 + ((x2 - x1) >> 12) * p
    if decoding:
        y = 1 if cs[2] <= xmid else 0
    if y:
        x2 = xmid
    else:
        x1 = xmid + 1
    while ((x1 ^ x2) & 0xFF000000) == 0:
        if decoding:
            pos = cs[3]
            b = np.int64(stream[pos]) if pos < stream.size else np.int64(0)
            cs[3] = pos + 1
            cs[2] = ((cs[2] << 8) & 0xFFFFFFFF) | b
        else:
            out = _put(out, cs[4], np.uint8(x2 >> 24))
            cs[4] += 1
        x1 = (x1 << 8) & 0xFFFFFFFF
        x2 = ((x2 << 8) & 0xFFFFFFFF) | 255
    cs[0] = x1
    cs[1] = x2
    return y, out


@inline
def start(decoding, stream):  # pragma: no cover - compiled
    """A fresh coder state (the decoder has read the first 4 bytes of ``stream``)."""
    cs = np.zeros(5, np.int64)
    cs[1] = 0xFFFFFFFF
    if decoding:
        for _ in range(4):
            pos = cs[3]
            b = np.int64(stream[pos]) if pos < stream.size else np.int64(0)
            cs[3] = pos + 1
            cs[2] = (cs[2] << 8) | b
    return cs


@inline
def finish(cs, out):  # pragma: no cover - compiled
    """Flush the encoder (the 4 bytes of ``x1``); returns the stream."""
    x1 = cs[0]
    for _ in range(4):
        out = _put(out, cs[4], np.uint8(x1 >> 24))
        cs[4] += 1
        x1 = (x1 << 8) & 0xFFFFFFFF
    return out[:cs[4]].copy()
