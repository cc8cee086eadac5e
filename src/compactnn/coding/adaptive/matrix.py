"""Context-mixing binary arithmetic coding of a sparse quantised matrix.

The matrix is given as its significance map (entry is not +0.0) and, for each
significant entry in row-major order, the index of its value in a codebook sorted by
value. Both are binarised and coded with one binary arithmetic coder whose
probabilities come from adaptive context models combined by a logistic mixer, in the
spirit of DeepCABAC (ISO/IEC 15938-17) and the PAQ family. Everything is integer
arithmetic, so encoder and decoder (same code path, ``decoding`` flag) make identical
predictions on every machine.

The coder, the adaptive models and the mixer are :mod:`compactnn.coding.adaptive.mixing`.

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

Cost: one coded decision per map entry up to the last significant one, plus
``ceil(log2 K)`` or ``floor(log2 K)`` per value, the same for encoding and decoding
(``benchmarks/archive_coders.py`` measures it).
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

__all__ = ["encode_matrix", "decode_matrix", "MAX_VALUES"]

MAX_VALUES = 256  # codebook size the value contexts are sized for
_S_INPUTS = 8  # significance: seven models and a bias
_V_INPUTS = 9  # value index: eight models and a bias


@jit
def _code(decoding, m, n, nnz, K, period, sig, vidx, stream):  # pragma: no cover - compiled
    """Encode (``sig``/``vidx`` given) or decode (``stream`` given, ``sig``/``vidx``
    filled) one matrix; returns ``(stream bytes, bytes read, significant entries)``."""
    out = np.zeros(1024 if not decoding else 1, np.uint8)
    cs = start(decoding, stream)
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
            s_col = STRETCH[p12(col_p[c])]
            s_row = STRETCH[p12(row_p[r])]
            ccls = (s_col + 2048) >> 8
            rcls = (s_row + 2048) >> 8
            i_cls = ((ccls << 4) | rcls) * 2 + l1
            rq = run if run < 15 else 15
            i_run = (rq << 4) | ccls
            i_cln = (ccls << 4) | (l1 | (l2 << 1) | (u << 2) | (ul << 3))
            st[0] = STRETCH[p12(nb_p[i_nb])]
            st[1] = s_col
            st[2] = s_row
            st[3] = STRETCH[p12(cls_p[i_cls])]
            st[4] = STRETCH[p12(run_p[i_run])]
            st[5] = STRETCH[p12(cln_p[i_cln])]
            q = c - period
            pb = 0
            if q >= 1:
                pb = cur[q] | (cur[q + 1] << 1) | (cur[q + 2] << 2)
            elif q == 0:
                pb = (cur[1] << 1) | (cur[2] << 2)
            i_per = (((pb << 2) | l1 | (l2 << 1)) << 5) | (ccls << 1) | u
            st[6] = STRETCH[p12(per_p[i_per])]
            st[7] = 256
            wb = ((l1 | (u << 1)) | ((ccls >> 2) << 2)) * _S_INPUTS
            p = mix(sw, wb, st, _S_INPUTS)
            y, out = code_bit(decoding, cs, out, stream,
                              np.int64(0 if decoding else sig[r * n + c]), p)
            train(sw, wb, st, _S_INPUTS, y, p)
            sm_update(nb_p, nb_n, i_nb, y, 255)
            sm_update(col_p, col_n, c, y, 1023)
            sm_update(row_p, row_n, r, y, 1023)
            sm_update(cls_p, cls_n, i_cls, y, 255)
            sm_update(run_p, run_n, i_run, y, 255)
            sm_update(cln_p, cln_n, i_cln, y, 255)
            sm_update(per_p, per_n, i_per, y, 255)
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
                st[0] = STRETCH[p12(v0_p[node])]
                st[1] = STRETCH[p12(vr_p[i_r])]
                st[2] = STRETCH[p12(vc_p[i_c])]
                st[3] = STRETCH[p12(vcol_p[i_col])] if node < 4 else 0
                st[4] = STRETCH[p12(vrow_p[i_row])] if node < 4 else 0
                vq = cur_v[c - period] if c >= period else K
                i_p = node * (K + 1) + vq
                i_l = node * (K + 1) + (cur_v[c - 1] if c >= 1 else K)
                st[5] = STRETCH[p12(vp_p[i_p])]
                st[6] = STRETCH[p12(vl_p[i_l])]
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
                st[7] = STRETCH[p12(vq_p[i_q])]
                st[8] = 256
                vb = (depth if depth < 15 else 15) * _V_INPUTS
                p = mix(vw, vb, st, _V_INPUTS)
                y, out = code_bit(decoding, cs, out, stream,
                                  np.int64(0 if decoding or vidx[vi] < mid else 1), p)
                train(vw, vb, st, _V_INPUTS, y, p)
                sm_update(v0_p, v0_n, node, y, 255)
                sm_update(vr_p, vr_n, i_r, y, 255)
                sm_update(vc_p, vc_n, i_c, y, 255)
                sm_update(vp_p, vp_n, i_p, y, 255)
                sm_update(vl_p, vl_n, i_l, y, 255)
                sm_update(vq_p, vq_n, i_q, y, 255)
                if node < 4:
                    sm_update(vcol_p, vcol_n, i_col, y, 1023)
                    sm_update(vrow_p, vrow_n, i_row, y, 1023)
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
        out = finish(cs, out)
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
