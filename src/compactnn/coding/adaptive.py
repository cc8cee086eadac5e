"""Context-mixing binary arithmetic coding of a sparse quantised matrix.

The matrix is given as its significance map (entry is not +0.0) and, for each
significant entry in row-major order, the index of its value in a codebook sorted by
value. Both are binarised and coded with one binary arithmetic coder whose
probabilities come from adaptive context models combined by a logistic mixer, in the
spirit of DeepCABAC (ISO/IEC 15938-17) and the PAQ family. Everything is integer
arithmetic, so encoder and decoder (same code path, ``decoding`` flag) make identical
predictions on every machine.

**Coder**: carry-less 32-bit binary arithmetic coder (``x1``/``x2`` interval, bytes
shifted out while the top bytes agree); each bit costs its 12-bit probability
``p = P(bit = 1)`` in ``[1, 4095]``; the encoder flushes the 4 bytes of ``x1``; the
decoder reads bytes past the end as 0.

**Adaptive model** (``_sm_*``): per context a 16-bit probability and a count ``n``;
after a bit ``y`` the probability moves by ``(y - p) * 2 / (2n + 3)`` and ``n`` grows up
to a per-model limit (a frequency count early, exponential forgetting later).

**Mixer**: the models' probabilities are mapped to the logistic domain
(``stretch``, ±2047 = ±8 nats), combined with one of several weight vectors
(selected by a small context), squashed back to 12 bits, and the weights are
trained online on the coding error.

**Significance bit** of entry ``(r, c)``: models indexed by the neighbourhood
(three entries to the left, three above and the one two rows up), the column ``c``,
the row ``r``, the column and row density classes (their models' current
predictions, quantised to 16 classes), the distance to the previous significant entry
of the row, the column class with the near neighbours, and the *period*
neighbourhood: entries ``c - period - 1 .. c - period + 1`` of the same row (the
pixel above and its neighbours when the inputs are flattened images of width
``period``); the mixer's weight set is selected by the left and upper neighbours and
the column class. Once all ``nnz`` significant entries are coded, the rest of the map
is implied.

**Value index** (codebook of ``K <= 256`` values sorted by value, so the first
decisions split by sign and magnitude): coded right after its significance bit as
the path in the balanced bisection tree of ``[0, K)`` (node ``t``: 1 at the root,
``2t + bit`` below), with models indexed by the node alone, the node and the
previous value of the same row, the previous value of the same column, the value of
the entry ``period`` to the left or of the left neighbour (``K``: zero), the mean
index of the significant ones among the left neighbour and the three entries around
``period`` to the left (in halves), and, for the top two levels, the node and the
column or the row; the mixer's weight set is selected by the node's depth.

**Float32 bit patterns** (:func:`encode_floats`, for biases and other plain
tensors): per value, the 8 exponent bits (bisection tree, models by node and by node
and the previous value's exponent), the sign (by exponent), the top 4 mantissa bits
(tree, by node and by node and exponent) and the 19 others (by bit position), each
bit mixed from its two models and a bias.

Cost: one coded decision per map entry up to the last significant one, plus
``ceil(log2 K)`` or ``floor(log2 K)`` per value, the same for encoding and decoding
(``benchmarks/archive_coders.py`` measures it).
"""

from __future__ import annotations

import numpy as np

from compactnn.kernels._jit import inline, jit

__all__ = ["encode_matrix", "decode_matrix", "encode_floats", "decode_floats", "MAX_VALUES"]

MAX_VALUES = 256  # codebook size the value contexts are sized for

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


_STRETCH = _stretch_table()
_RECIP = np.array([131072 // (2 * n + 3) for n in range(1024)], np.int64)  # 2^16 * 2/(2n+3)

_S_INPUTS = 8  # significance: seven models and a bias
_V_INPUTS = 9  # value index: eight models and a bias
_LR = 16  # mixer learning rate (2..28 tried on LeNet-300-100: within 2%)


@inline
def _squash(d):  # pragma: no cover - compiled
    if d > 2047:
        d = 2047
    if d < -2047:
        d = -2047
    return _SQUASH[d + 2048]


@inline
def _p12(p16):  # pragma: no cover - compiled
    p = p16 >> 4
    if p < 1:
        p = 1
    if p > 4095:
        p = 4095
    return p


@inline
def _sm_update(prob, cnt, i, y, limit):  # pragma: no cover - compiled
    n = cnt[i]
    prob[i] += (((y << 16) - prob[i]) * _RECIP[n]) >> 16
    if n < limit:
        cnt[i] = n + 1


@inline
def _mix(w, base, st, k):  # pragma: no cover - compiled
    dot = 0
    for j in range(k):
        dot += w[base + j] * st[j]
    return _squash(dot >> 16)


@inline
def _train(w, base, st, k, y, p):  # pragma: no cover - compiled
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
def _bit(decoding, cs, out, stream, y, p):  # pragma: no cover - compiled
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
def _start(decoding, stream):  # pragma: no cover - compiled
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
def _finish(cs, out):  # pragma: no cover - compiled
    """Flush the encoder (the 4 bytes of ``x1``); returns the stream."""
    x1 = cs[0]
    for _ in range(4):
        out = _put(out, cs[4], np.uint8(x1 >> 24))
        cs[4] += 1
        x1 = (x1 << 8) & 0xFFFFFFFF
    return out[:cs[4]].copy()


@jit
def _code(decoding, m, n, nnz, K, period, sig, vidx, stream):  # pragma: no cover - compiled
    """Encode (``sig``/``vidx`` given) or decode (``stream`` given, ``sig``/``vidx``
    filled) one matrix; returns ``(stream bytes, bytes read, significant entries)``."""
    out = np.zeros(1024 if not decoding else 1, np.uint8)
    cs = _start(decoding, stream)
    # ---- significance models
    nb_p = np.full(128, 32768, np.int64)
    nb_n = np.zeros(128, np.int64)
    col_p = np.full(n, 32768, np.int64)
    col_n = np.zeros(n, np.int64)
    row_p = np.full(m, 32768, np.int64)
    row_n = np.zeros(m, np.int64)
    cls_p = np.full(512, 32768, np.int64)
    cls_n = np.zeros(512, np.int64)
    run_p = np.full(256, 32768, np.int64)
    run_n = np.zeros(256, np.int64)
    cln_p = np.full(256, 32768, np.int64)
    cln_n = np.zeros(256, np.int64)
    per_p = np.full(1024, 32768, np.int64)
    per_n = np.zeros(1024, np.int64)
    sw = np.full(64 * _S_INPUTS, 8192, np.int64)
    st = np.zeros(9, np.int64)
    # ---- value models (node < 2 * MAX_VALUES)
    NODES = 2 * MAX_VALUES
    v0_p = np.full(NODES, 32768, np.int64)
    v0_n = np.zeros(NODES, np.int64)
    vr_p = np.full(NODES * (K + 1), 32768, np.int64)
    vr_n = np.zeros(NODES * (K + 1), np.int64)
    vc_p = np.full(NODES * (K + 1), 32768, np.int64)
    vc_n = np.zeros(NODES * (K + 1), np.int64)
    vcol_p = np.full(4 * n, 32768, np.int64)
    vcol_n = np.zeros(4 * n, np.int64)
    vrow_p = np.full(4 * m, 32768, np.int64)
    vrow_n = np.zeros(4 * m, np.int64)
    vp_p = np.full(NODES * (K + 1), 32768, np.int64)
    vp_n = np.zeros(NODES * (K + 1), np.int64)
    vl_p = np.full(NODES * (K + 1), 32768, np.int64)
    vl_n = np.zeros(NODES * (K + 1), np.int64)
    vq_p = np.full(NODES * (2 * K + 2), 32768, np.int64)
    vq_n = np.zeros(NODES * (2 * K + 2), np.int64)
    vw = np.full(16 * _V_INPUTS, 8192, np.int64)
    # ---- matrix state
    prev_row = np.zeros(n + 2, np.int64)  # bits of row r-1, offset 1 (index c + 1)
    prev_row2 = np.zeros(n + 2, np.int64)
    cur = np.zeros(n + 2, np.int64)
    cur_v = np.full(n, K, np.int64)  # value index of each entry of row r so far (K: zero)
    last_col = np.full(n, K, np.int64)  # value index of the last significant entry above
    done = 0
    vi = 0
    for r in range(m):
        if done == nnz:
            break
        for c in range(n + 2):
            cur[c] = 0
        for c in range(n):
            cur_v[c] = K
        last_row = K
        run = 0
        for c in range(n):
            if done == nnz:
                break
            # ---- significance bit
            l1 = cur[c]
            l2 = cur[c - 1] if c >= 1 else 0
            l3 = cur[c - 2] if c >= 2 else 0
            u = prev_row[c + 1]
            ul = prev_row[c]
            ur = prev_row[c + 2]
            u2 = prev_row2[c + 1]
            i_nb = l1 | (l2 << 1) | (l3 << 2) | (u << 3) | (ul << 4) | (ur << 5) | (u2 << 6)
            s_col = _STRETCH[_p12(col_p[c])]
            s_row = _STRETCH[_p12(row_p[r])]
            ccls = (s_col + 2048) >> 8
            rcls = (s_row + 2048) >> 8
            i_cls = ((ccls << 4) | rcls) * 2 + l1
            rq = run if run < 15 else 15
            i_run = (rq << 4) | ccls
            i_cln = (ccls << 4) | (l1 | (l2 << 1) | (u << 2) | (ul << 3))
            st[0] = _STRETCH[_p12(nb_p[i_nb])]
            st[1] = s_col
            st[2] = s_row
            st[3] = _STRETCH[_p12(cls_p[i_cls])]
            st[4] = _STRETCH[_p12(run_p[i_run])]
            st[5] = _STRETCH[_p12(cln_p[i_cln])]
            q = c - period
            pb = 0
            if q >= 1:
                pb = cur[q] | (cur[q + 1] << 1) | (cur[q + 2] << 2)
            elif q == 0:
                pb = (cur[1] << 1) | (cur[2] << 2)
            i_per = (((pb << 2) | l1 | (l2 << 1)) << 5) | (ccls << 1) | u
            st[6] = _STRETCH[_p12(per_p[i_per])]
            st[7] = 256
            wb = ((l1 | (u << 1)) | ((ccls >> 2) << 2)) * _S_INPUTS
            p = _mix(sw, wb, st, _S_INPUTS)
            y, out = _bit(decoding, cs, out, stream, np.int64(0 if decoding else sig[r * n + c]),
                          p)
            _train(sw, wb, st, _S_INPUTS, y, p)
            _sm_update(nb_p, nb_n, i_nb, y, 255)
            _sm_update(col_p, col_n, c, y, 1023)
            _sm_update(row_p, row_n, r, y, 1023)
            _sm_update(cls_p, cls_n, i_cls, y, 255)
            _sm_update(run_p, run_n, i_run, y, 255)
            _sm_update(cln_p, cln_n, i_cln, y, 255)
            _sm_update(per_p, per_n, i_per, y, 255)
            if decoding:
                sig[r * n + c] = y
            cur[c + 1] = y
            if not y:
                run += 1
                continue
            run = 0
            done += 1
            # ---- value index: bisection of [lo, hi)
            lo = 0
            hi = K
            node = 1
            depth = 0
            lc = last_col[c]
            while hi - lo > 1:
                mid = (lo + hi) >> 1
                i_r = node * (K + 1) + last_row
                i_c = node * (K + 1) + lc
                i_col = c * 4 + node if node < 4 else 0
                i_row = r * 4 + node if node < 4 else 0
                st[0] = _STRETCH[_p12(v0_p[node])]
                st[1] = _STRETCH[_p12(vr_p[i_r])]
                st[2] = _STRETCH[_p12(vc_p[i_c])]
                st[3] = _STRETCH[_p12(vcol_p[i_col])] if node < 4 else 0
                st[4] = _STRETCH[_p12(vrow_p[i_row])] if node < 4 else 0
                vq = cur_v[c - period] if c >= period else K
                i_p = node * (K + 1) + vq
                i_l = node * (K + 1) + (cur_v[c - 1] if c >= 1 else K)
                st[5] = _STRETCH[_p12(vp_p[i_p])]
                st[6] = _STRETCH[_p12(vl_p[i_l])]
                # the neighbours' mean value index (2x, rounded down), 2K + 1: none
                tot = 0
                cntn = 0
                if c >= 1 and cur_v[c - 1] < K:
                    tot += cur_v[c - 1]
                    cntn += 1
                for dq in range(-1, 2):
                    q2 = c - period + dq
                    if 0 <= q2 < c and cur_v[q2] < K:
                        tot += cur_v[q2]
                        cntn += 1
                pred = (2 * tot) // cntn if cntn else 2 * K + 1
                i_q = node * (2 * K + 2) + pred
                st[7] = _STRETCH[_p12(vq_p[i_q])]
                st[8] = 256
                vb = (depth if depth < 15 else 15) * _V_INPUTS
                p = _mix(vw, vb, st, _V_INPUTS)
                y, out = _bit(decoding, cs, out, stream,
                              np.int64(0 if decoding or vidx[vi] < mid else 1), p)
                _train(vw, vb, st, _V_INPUTS, y, p)
                _sm_update(v0_p, v0_n, node, y, 255)
                _sm_update(vr_p, vr_n, i_r, y, 255)
                _sm_update(vc_p, vc_n, i_c, y, 255)
                _sm_update(vp_p, vp_n, i_p, y, 255)
                _sm_update(vl_p, vl_n, i_l, y, 255)
                _sm_update(vq_p, vq_n, i_q, y, 255)
                if node < 4:
                    _sm_update(vcol_p, vcol_n, i_col, y, 1023)
                    _sm_update(vrow_p, vrow_n, i_row, y, 1023)
                if y:
                    lo = mid
                else:
                    hi = mid
                node = 2 * node + y
                depth += 1
            if decoding:
                vidx[vi] = lo
            vi += 1
            last_row = lo
            cur_v[c] = lo
            last_col[c] = lo
        tmp = prev_row2
        prev_row2 = prev_row
        prev_row = cur
        cur = tmp
    if not decoding:
        out = _finish(cs, out)
    return out, cs[3], done



def encode_matrix(sig: np.ndarray, vidx: np.ndarray, K: int, period: int) -> np.ndarray:
    """The stream of an ``(m, n)`` significance map (``uint8`` 0/1) and the value
    indices (``0 <= vidx < K <= MAX_VALUES``, one per significant entry, row-major)."""
    m, n = sig.shape
    if not 1 <= K <= MAX_VALUES:
        raise ValueError(f"codebook of {K} values: the adaptive coder takes 1..{MAX_VALUES}")
    flat = np.ascontiguousarray(sig, np.uint8).reshape(-1)
    nnz = int(flat.sum())
    if vidx.size != nnz:
        raise ValueError(f"{vidx.size} value indices for {nnz} significant entries")
    if vidx.size and not 0 <= int(vidx.min()) <= int(vidx.max()) < K:
        raise ValueError(f"value indices must be in [0, {K})")
    stream, _, done = _code(False, m, n, nnz, K, period, flat, np.ascontiguousarray(vidx, np.uint8),
                            np.zeros(0, np.uint8))
    assert done == nnz
    return stream


def decode_matrix(stream: np.ndarray, m: int, n: int, nnz: int, K: int,
                  period: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Inverse of :func:`encode_matrix`: ``(significance map (m*n uint8 0/1), value
    indices (uint8: K <= 256), stream bytes the decoder read)``. A corrupt stream gives
    some map and indices (the caller checks the count of significant entries and the
    stream length)."""
    sig = np.zeros(m * n, np.uint8)
    vidx = np.zeros(nnz, np.uint8)
    _, read, done = _code(True, m, n, nnz, K, period, sig, vidx,
                          np.ascontiguousarray(stream, np.uint8))
    if done != nnz:
        raise ValueError(f"stream holds {done} significant entries, expected {nnz}")
    return sig, vidx, read


_F_SETS = 14  # mixer weight sets of the float coder: 8 exponent levels, sign, 4 + 1 mantissa
_F_FINE = 65536 + 256 + 4096 + 32


@jit
def _code_floats(decoding, bits, stream):  # pragma: no cover - compiled
    """Encode ``bits`` (uint32 patterns as int64) or decode ``bits.size`` of them into
    ``bits``; returns ``(stream, bytes read)``."""
    out = np.zeros(1024 if not decoding else 1, np.uint8)
    cs = _start(decoding, stream)
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
                st[0] = _STRETCH[_p12(a_p[ia])]
                st[1] = _STRETCH[_p12(b_p[ib])]
                st[2] = 256
                p = _mix(w, ws * 3, st, 3)
                y, out = _bit(decoding, cs, out, stream, np.int64(y), p)
                _train(w, ws * 3, st, 3, y, p)
                _sm_update(a_p, a_n, ia, y, 255)
                _sm_update(b_p, b_n, ib, y, 255)
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
                    p = _p12(a_p[ia])
                    y, out = _bit(decoding, cs, out, stream, np.int64(y), p)
                    _sm_update(a_p, a_n, ia, y, 1023)
                    if decoding:
                        v |= y << j
                break
        if decoding:
            bits[i] = v
        prev_e = e
    if not decoding:
        out = _finish(cs, out)
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
