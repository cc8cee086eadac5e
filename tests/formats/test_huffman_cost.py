"""``cost()`` of HAM and sHAM counts what the kernel of each path does: the numba
kernels one lookup per coded entry, the native fused matvecs their steps (zero runs
skipped by a count of leading zeros, one or two codes per lookup), the batch-1 tile
kernel (AVX-512 with VBMI and CD) its tiles and steps. The expected counts come from
decoding the stream in plain Python and walking the kernels' documented schedule
(docs/architecture/huffman.md), not from the library."""

from __future__ import annotations

import numpy as np
import pytest

from compactnn import formats
from compactnn.cost import energy_pj
from compactnn.kernels import backend

ZT1, ZSKIP, T, NS, PS = 12, 45, 11, 8, 6  # PS: rows of the fused sparse loop
HTILE = backend._ext is not None and bool(backend._ext.htile_cpu())  # avx512 runs tiles


def tile_reference(M) -> dict[str, int] | None:
    """The tile kernel's walk when this CPU builds tiles for M (zero-run ham, or sham
    with >= 1/32 of the entries stored; at most 32 non-zero values), else None: 16-row
    slices, 32-column tiles, a tile taking the most entries any of its rows has, at
    least one step."""
    W = M.to_dense()
    m, n = W.shape
    nz = W.view(np.uint32) != 0
    values = np.unique(W.view(np.uint32)[nz]).size
    sham = M.format_id == "sham"
    if (not HTILE or not m or not n or not 1 <= values <= 32 or (not sham and not M._zrun)
            or (sham and nz.sum() < m * n / 32)):
        return None
    S, B = -(-m // 16), -(-n // 32)
    pad = np.zeros((16 * S, 32 * B), bool)
    pad[:m, :n] = nz
    most = pad.reshape(S, 16, B, 32).sum(axis=3).max(axis=1)
    per_slice = np.maximum(most, 1).sum(axis=1)
    return {"steps": int(per_slice.sum()), "tiles": S * B, "slices": S,
            "flushes": int((-(-per_slice // 16)).sum())}


def check_tile_cost(c, ref: dict[str, int], m: int) -> None:
    """A batch-1 cost of the tile kernel: 16 lanes an FMA, each tile's masks and inputs
    once, a stream window and a step flag per step (two windows start a slice), the
    stream's words once (a lane takes 16 bits at a time, more than its codes need)."""
    assert c.mults == c.adds == 16 * ref["steps"]
    assert c.reads["masks"][0] == 16 * ref["tiles"] and c.reads["x"][0] == 32 * ref["tiles"]
    assert c.reads["adv"][0] == ref["steps"]
    assert c.reads["window"][0] == ref["steps"] + 2 * ref["slices"]
    assert 0 < c.reads["stream"][0] >= 2 * 16 * ref["slices"]
    assert c.writes["y"][0] == m


def lookups(c, table: str) -> int:
    """Table lookups in a native cost: one-code steps plus two-code steps."""
    return sum(c.reads[k][0] for k in (table, table + "2") if k in c.reads)


def _bits(words: np.ndarray) -> str:
    return "".join(f"{int(w):032b}" for w in words) + "0" * 128


def _codes(length_counts) -> dict[str, int]:
    """Canonical code words (as bit strings) -> code length."""
    out, code = {}, 0
    for ln, c in enumerate((int(v) for v in length_counts), start=1):
        for _ in range(c):
            out[format(code, f"0{ln}b")] = ln
            code += 1
        code <<= 1
    return out


def _len_at(bits: str, p: int, codes: dict[str, int]) -> int:
    for ln in range(1, 33):
        if bits[p:p + ln] in codes:
            return ln
    raise AssertionError("no code")


def _lz(bits: str, p: int) -> int:
    z = 0
    while z < 63 and bits[p + z] == "0":
        z += 1
    return z


def _blocks(m: int, ns: int = NS):
    """The rows of each ns-row block; a short last block repeats its last row."""
    for r in range(0, m, ns):
        yield [min(r + s, m - 1) for s in range(ns)]


def _zrun_reference(M, pair: bool) -> dict[str, int]:
    """The fused zero-run matvec's steps, walked on the decoded bit string."""
    bits, codes, rb = _bits(M.words), _codes(M.length_counts), M.row_bits.astype(int)
    lmax = M.length_counts.size
    big = ZSKIP + max(ZT1, lmax)
    n = {"peek": 0, "lookup": 0, "mult": 0, "pair": 0, "esc": 0}

    def step(p, checked_end=None):
        n["peek"] += 1
        z = _lz(bits, p)
        q = p + z
        if z > ZSKIP:
            return p + ZSKIP
        if checked_end is not None and q >= checked_end:
            return checked_end
        n["lookup"] += 1
        ln = _len_at(bits, q, codes)
        if ln > ZT1:
            n["esc"] += 1
            n["peek"] += 1
        if pair and checked_end is None:
            n["mult"] += 2
            z2 = 0
            while z2 < ZT1 - ln and bits[q + ln + z2] == "0":
                z2 += 1
            if z2 < ZT1 - ln and ln + z2 + _len_at(bits, q + ln + z2, codes) <= ZT1:
                n["pair"] += 1
                return q + ln + z2 + _len_at(bits, q + ln + z2, codes)
            return q + ln
        n["mult"] += 1
        return q + ln

    for rows in _blocks(M.shape[0]):
        p = [rb[r] for r in rows]
        e = [rb[r + 1] for r in rows]
        while min(ei - pi for ei, pi in zip(e, p, strict=True)) - (ZSKIP + ZT1) >= 0:
            left = min(ei - pi for ei, pi in zip(e, p, strict=True)) - (ZSKIP + ZT1)
            for _ in range(left // big + 1):
                p = [step(pi) for pi in p]
        while any(pi < ei for pi, ei in zip(p, e, strict=True)):
            p = [step(pi, ei) if pi < ei else pi for pi, ei in zip(p, e, strict=True)]
    return n


def _sparse_reference(M) -> dict[str, int]:
    """The fused sparse matvec's lookups: code lengths per row, then the schedule."""
    bits, codes = _bits(M.words), _codes(M.length_counts)
    rp, rb = M.row_ptr.astype(int), M.row_bits.astype(int)
    lens = []
    for r in range(M.shape[0]):
        p, row = rb[r], []
        for _ in range(rp[r + 1] - rp[r]):
            row.append(_len_at(bits, p, codes))
            p += row[-1]
        lens.append(row)
    n = {"lookup": 0, "mult": 0, "pair": 0, "twostep": 0}
    for rows in _blocks(M.shape[0], PS):
        k = [0] * PS
        ls = [lens[r] for r in rows]
        while min(len(ls[s]) - k[s] for s in range(PS)) >= 2:
            for _ in range(min(len(ls[s]) - k[s] for s in range(PS)) // 2):
                for s in range(PS):
                    n["lookup"] += 1
                    a = ls[s][k[s]]
                    if a > T:
                        n["mult"] += 1
                        k[s] += 1
                        continue
                    n["mult"] += 2
                    n["twostep"] += 1
                    if a + ls[s][k[s] + 1] <= T:
                        n["pair"] += 1
                        k[s] += 2
                    else:
                        k[s] += 1
        for s in range(PS):
            n["lookup"] += len(ls[s]) - k[s]
            n["mult"] += len(ls[s]) - k[s]
    return n


def _matrix(m: int, n: int, zeros: float, vals: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.integers(1, vals + 1, (m, n)).astype(np.float32) * np.float32(0.25)
    W[rng.random((m, n)) < zeros] = 0
    W[2, : n // 2] = 0  # long zero runs (> 45 entries)
    W[min(4, m - 1)] = 0
    return W


@pytest.mark.parametrize("shape,zeros,vals", [((21, 300), 0.7, 6), ((13, 257), 0.9, 30),
                                              ((9, 500), 0.5, 3)])
def test_ham_native_batch1_counts_the_fused_zero_run_steps(shape, zeros, vals):
    W = _matrix(*shape, zeros, vals, seed=shape[0])
    M = formats.get("ham").from_dense(W)
    assert M._zrun
    nnz = int(np.count_nonzero(W.view(np.uint32)))
    lmax = M.length_counts.size
    complete = sum(int(c) * 2.0 ** -(i + 1) for i, c in enumerate(M.length_counts)) == 1
    tiles = tile_reference(M)
    for path in ("portable", "avx2", "avx512"):
        pair = path != "portable" and lmax <= ZT1 and complete and nnz >= 0.2 * W.size
        ref = _zrun_reference(M, pair)
        c = M.cost(backend=path)
        if path == "avx512" and tiles:
            check_tile_cost(c, tiles, W.shape[0])
            continue
        assert c.mults == c.adds == ref["mult"]
        assert lookups(c, "ztab") == ref["lookup"]
        assert c.reads["window"][0] == ref["peek"]
        assert c.reads["x"][0] == ref["mult"]
        walked = sum(int(np.count_nonzero(W[r].view(np.uint32)))
                     for rows in _blocks(W.shape[0]) for r in rows)  # repeated rows too
        assert ref["lookup"] + ref["pair"] == walked
        if pair:  # unchecked steps multiply twice, the rows' last bits once a code
            assert ref["pair"] > 0 and ref["lookup"] < c.mults < 2 * ref["lookup"]
            assert c.mults - ref["lookup"] == c.reads["ztab2"][0]  # the two-code steps
        else:
            assert ref["pair"] == 0
        if ref["esc"]:
            assert c.reads["base"][0] == ref["esc"]
    c = M.cost(backend="numba")  # one lookup and multiply per non-zero entry
    assert c.mults == nnz and c.reads["lut"][0] == nnz


def test_ham_native_pairs_reduce_lookups_and_energy_follows():
    W = _matrix(16, 600, 0.6, 4, seed=5)
    M = formats.get("ham").from_dense(W)
    nnz = int(np.count_nonzero(W.view(np.uint32)))
    p, a = M.cost(backend="portable"), M.cost(backend="avx2")
    assert lookups(p, "ztab") >= nnz  # one lookup per non-zero code (repeated rows too)
    assert lookups(a, "ztab") < lookups(p, "ztab")  # two codes per lookup
    assert energy_pj(a) != energy_pj(p)


@pytest.mark.parametrize("shape,zeros,vals", [((19, 300), 0.8, 6), ((8, 700), 0.9, 40)])
def test_sham_native_batch1_counts_the_fused_sparse_lookups(shape, zeros, vals):
    W = _matrix(*shape, zeros, vals, seed=shape[1])
    M = formats.get("sham").from_dense(W)
    ref, tiles = _sparse_reference(M), tile_reference(M)
    for path in ("portable", "avx2", "avx512"):
        c = M.cost(backend=path)
        if path == "avx512" and tiles:
            check_tile_cost(c, tiles, W.shape[0])
            continue
        assert lookups(c, "ptab") == c.reads["window"][0] - c.reads.get("base", (0,))[0]
        assert c.reads.get("ptab2", (0,))[0] == ref["twostep"]
        assert lookups(c, "ptab") == ref["lookup"]
        assert c.mults == ref["mult"] and c.reads["col_idx"][0] == ref["mult"]
    c = M.cost(backend="numba")
    assert c.mults == M.nnz and c.reads["lut"][0] == M.nnz


def test_batched_cost_decodes_once_and_multiplies_per_column():
    W = _matrix(12, 200, 0.8, 5, seed=1)
    for fid in ("ham", "sham", "csr", "cer", "cser", "index_map", "dense"):
        M = formats.get(fid).from_dense(W)
        for path in ("numba", "avx512"):
            one, many = M.cost(1, path), M.cost(20, path)
            # avx512 csr/cer/cser: batch 1 runs the sliced kernel (padded steps)
            other = fid in ("ham", "sham") or (path == "avx512" and fid in ("csr", "cer", "cser"))
            assert many.mults == 20 * one.mults or other
            assert many.writes["y"][0] == 20 * W.shape[0]
            assert many.reads["x"][0] >= 20 * one.reads["x"][0] // 2 or other
    M = formats.get("ham").from_dense(W)
    nnz = int(np.count_nonzero(W.view(np.uint32)))
    c = M.cost(20, "avx2")
    assert c.mults == 20 * nnz and c.writes["records"][0] == nnz


@pytest.mark.skipif(not HTILE, reason="this CPU has no AVX-512 VBMI/CD: no tiles")
@pytest.mark.parametrize("batch", [2, 4, 5, 64, 65])
def test_ham_batched_cost_on_the_tiles(batch):
    """Zero-run ham batches at the avx512 level: up to 4 inputs run the tile matvec
    once each; larger batches decode the tiles: the tile walk without x, 16 records a
    step into the ring, 256 a flush out of it into the rows, then the records read once
    per 64 columns of X and multiplied per column."""
    W = _matrix(40, 300, 0.85, 7, seed=4)
    M = formats.get("ham").from_dense(W)
    ref = tile_reference(M)
    nnz = int(np.count_nonzero(W.view(np.uint32)))
    c = M.cost(batch, "avx512")
    if batch <= 4:
        assert c.mults == batch * M.cost(1, "avx512").mults == batch * 16 * ref["steps"]
        assert c.reads["masks"][0] == batch * 16 * ref["tiles"] and "ring" not in c.writes
        assert c.writes["y"][0] == batch * W.shape[0]
        return
    assert c.mults == c.adds == batch * nnz
    assert c.reads["masks"][0] == 16 * ref["tiles"]
    assert c.reads["adv"][0] == ref["steps"] and c.writes["ring"][0] == 16 * ref["steps"]
    assert c.reads["ring"][0] == c.writes["records"][0] == 256 * ref["flushes"]
    assert c.reads["records"][0] == nnz * -(-batch // 64)
    assert c.reads["x"][0] == batch * nnz and c.writes["y"][0] == batch * W.shape[0]
    assert M.cost(batch, "avx2").writes["records"][0] == nnz  # the stream path


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_cost_rejects_bad_batch(bad):
    M = formats.get("csr").from_dense(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="batch"):
        M.cost(bad)
    with pytest.raises(ValueError, match="kernel path"):
        M.cost(backend="gpu")
