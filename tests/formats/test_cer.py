"""CER and CSER beyond the conformance suite: slow reference encoders written straight
from the spec, the storage formula, the shifted codebook, thread independence and the
corruptions that need more than one mutated element."""

from __future__ import annotations

from collections import Counter

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from compactnn import formats
from compactnn.formats import FormatError, index_dtype

from .strategies import low_entropy
from .test_conformance import check_products, same_bits

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- reference encoders (loops, straight from the spec) ----------------------------------


def ref_codebook(W: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Distinct values by bit pattern, by decreasing count, ties by ascending value then
    bit pattern; and the code of each bit pattern."""
    bits = W.reshape(-1).view(np.uint32).tolist()
    counts = Counter(bits)
    as_float = {b: float(np.array([b], np.uint32).view(np.float32)[0]) for b in counts}
    order = sorted(counts, key=lambda b: (-counts[b], as_float[b], b))
    omega = np.array(order, dtype=np.uint32).view(np.float32)
    return omega, {b: i for i, b in enumerate(order)}


def ref_groups(W: np.ndarray) -> tuple[np.ndarray, list[list[tuple[int, list[int]]]]]:
    """Codebook and, per row, the list of (code, ascending columns) for every code != 0
    present in the row, in code order."""
    omega, code_of = ref_codebook(W)
    rows = []
    for r in range(W.shape[0]):
        by_code: dict[int, list[int]] = {}
        for c in range(W.shape[1]):
            code = code_of[int(W[r, c:c + 1].view(np.uint32)[0])]
            if code:
                by_code.setdefault(code, []).append(c)
        rows.append(sorted(by_code.items()))
    return omega, rows


def ref_cer(W: np.ndarray) -> dict[str, np.ndarray]:
    m, n = W.shape
    omega, rows = ref_groups(W)
    col_idx, omega_ptr, row_ptr = [], [0], [0]
    for groups in rows:
        present = dict(groups)
        k_r = max(present, default=0)
        for t in range(1, k_r + 1):
            col_idx += present.get(t, [])
            omega_ptr.append(len(col_idx))
        row_ptr.append(len(omega_ptr) - 1)
    return {
        "omega": omega,
        "col_idx": np.array(col_idx, index_dtype(max(n - 1, 0))),
        "omega_ptr": np.array(omega_ptr, index_dtype(len(col_idx))),
        "row_ptr": np.array(row_ptr, index_dtype(len(omega_ptr) - 1)),
    }


def ref_cser(W: np.ndarray) -> dict[str, np.ndarray]:
    m, n = W.shape
    omega, rows = ref_groups(W)
    col_idx, omega_ptr, row_ptr, omega_idx = [], [0], [0], []
    for groups in rows:
        for code, cols in groups:
            col_idx += cols
            omega_ptr.append(len(col_idx))
            omega_idx.append(code)
        row_ptr.append(len(omega_idx))
    return {
        "omega": omega,
        "col_idx": np.array(col_idx, index_dtype(max(n - 1, 0))),
        "omega_ptr": np.array(omega_ptr, index_dtype(len(col_idx))),
        "row_ptr": np.array(row_ptr, index_dtype(len(omega_idx))),
        "omega_idx": np.array(omega_idx, index_dtype(max(omega.size - 1, 0))),
    }


REFERENCES = {"cer": ref_cer, "cser": ref_cser}


@pytest.mark.parametrize("fid", ["cer", "cser"])
@SETTINGS
@given(W=low_entropy())
def test_encoder_matches_reference(fid, W):
    bufs, _ = formats.get(fid).from_dense(W).to_buffers()
    ref = REFERENCES[fid](W)
    assert list(bufs) == list(ref)
    for name, want in ref.items():
        got = bufs[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name


@SETTINGS
@given(W=low_entropy())
def test_cser_groups_are_the_non_empty_cer_groups(W):
    A = formats.get("cer").from_dense(W)
    B = formats.get("cser").from_dense(W)
    assert same_bits(A.omega, B.omega) and np.array_equal(A.col_idx, B.col_idx)
    for r in range(W.shape[0]):
        cer_groups = []
        for t, g in enumerate(range(int(A.row_ptr[r]), int(A.row_ptr[r + 1])), start=1):
            cols = A.col_idx[int(A.omega_ptr[g]):int(A.omega_ptr[g + 1])].tolist()
            if cols:
                cer_groups.append((t, cols))
        cser_groups = [
            (int(B.omega_idx[g]), B.col_idx[int(B.omega_ptr[g]):int(B.omega_ptr[g + 1])].tolist())
            for g in range(int(B.row_ptr[r]), int(B.row_ptr[r + 1]))
        ]
        assert cser_groups == cer_groups


@SETTINGS
@given(W=low_entropy())
def test_storage_formula(W):
    m, n = W.shape
    A = formats.get("cer").from_dense(W)
    B = formats.get("cser").from_dense(W)
    K = np.unique(W.reshape(-1).view(np.uint32)).size
    nnz = int(np.count_nonzero(W.view(np.uint32) != A.omega[:1].view(np.uint32))) if K else 0
    cer_groups = sum(
        max((int(np.flatnonzero(A.omega.view(np.uint32) == b)[0])
             for b in W[r].view(np.uint32)), default=0)
        for r in range(m)
    )
    cser_groups = len({(r, int(b)) for r in range(m) for b in W[r].view(np.uint32)
                       if K and b != A.omega[:1].view(np.uint32)[0]})

    def bits(dt):
        return np.dtype(dt).itemsize * 8

    b_col = bits(index_dtype(max(n - 1, 0)))
    b_ptr = bits(index_dtype(nnz))
    for M, G in ((A, cer_groups), (B, cser_groups)):
        assert M.omega.shape == (K,) and M.col_idx.shape == (nnz,)
        assert M.omega_ptr.shape == (G + 1,) and M.row_ptr.shape == (m + 1,)
        expected = K * 32 + nnz * b_col + (G + 1) * b_ptr + (m + 1) * bits(index_dtype(G))
        if M is B:
            assert B.omega_idx.shape == (G,)
            expected += G * bits(index_dtype(max(K - 1, 0)))
        assert 8 * M.nbytes == expected


# ---- products, shift, threads -----------------------------------------------------------


@pytest.mark.parametrize("fid", ["cer", "cser"])
def test_non_zero_most_frequent_value(fid):
    rng = np.random.default_rng(11)
    W = rng.choice(np.array([0.5, 0.5, 0.5, 0.5, 0.0, -1.25, 2.0], np.float32), (31, 57))
    M = formats.get(fid).from_dense(W)
    assert M.omega[0] == np.float32(0.5)
    assert same_bits(M.to_dense(), W)
    check_products(M, W, rng)
    m, n = W.shape
    G = M.omega_ptr.size - 1
    groups = int(np.count_nonzero(np.diff(M.omega_ptr.astype(np.int64))))
    c = M.cost(1, "avx2")  # the branch-free matvec: every stored group, omega[0] * sum(x) once
    assert c.mults == G + 1
    assert c.adds == M.nnz + 5 * G + 2 * m + n
    assert c.reads["x"][0] == M.nnz + n
    c = M.cost(3, "avx2")  # sum-then-multiply per non-empty group and column
    assert c.mults == 3 * (groups + 1)
    assert c.adds == 3 * (M.nnz + groups + n + m)
    assert c.reads["x"][0] == 3 * (M.nnz + n)
    steps = M._sliced_steps()  # AVX-512: the sliced kernel, 16 slots a step
    assert steps > 0
    c = M.cost(1, "avx512")
    assert c.mults == 16 * steps + 1
    assert c.reads["x"][0] == 32 * steps + n
    c = M.cost(3, "avx512")  # batched: csr rows with codes, then omega0 * column sums
    assert c.mults == 3 * (M.nnz + m)
    assert c.reads["codes"][0] == M.nnz


@pytest.mark.parametrize("fid", ["cer", "cser"])
def test_negative_zero_fill_needs_no_shift(fid):
    W = np.full((4, 6), -0.0, np.float32)
    W[1, 2], W[3, 0] = 1.5, -2.0
    M = formats.get(fid).from_dense(W)
    assert M.omega[:1].view(np.uint32)[0] == 0x80000000
    assert same_bits(M.to_dense(), W)
    assert M.cost(1, "avx2").mults == M.omega_ptr.size - 1  # CER pads code 1 in row 3
    assert M.cost(2, "avx2").mults == 2 * 2
    x = np.arange(6, dtype=np.float32)
    assert M.matvec(x).tolist() == [0.0, 3.0, 0.0, 0.0]


def test_cost_counts_by_hand():
    W = np.array([[0, 2, 1, 2], [0, 0, 0, 1], [0.5, 0, 0, 0]], np.float32)
    # codebook [0, 1, 2, 0.5]; row 2 holds code 3 only: CER pads codes 1 and 2 there.
    A = formats.get("cer").from_dense(W)
    B = formats.get("cser").from_dense(W)
    assert A.omega_ptr.tolist() == [0, 1, 3, 4, 4, 4, 5] and A.row_ptr.tolist() == [0, 2, 3, 6]
    assert B.omega_idx.tolist() == [1, 2, 1, 3] and B.row_ptr.tolist() == [0, 2, 3, 4]
    for M, G in ((A, 6), (B, 4)):
        c = M.cost(1, "avx2")  # batch 1: 5 running-sum adds, per group 3 prefix adds, 1
        # difference, 1 accumulate and 1 multiply; per row 2 adds
        assert (c.adds, c.mults) == (5 + 5 * G + 2 * 3, G)
        assert c.reads["omega_ptr"][0] == G + 2 * 3 and c.reads["col_idx"][0] == 5
        assert c.writes["sums"][0] == 5 and c.reads["sums"][0] == 4 * G
        assert c.reads["x"] == (5, 32, 16) and c.writes["y"] == (3, 32, 12)
        c = M.cost(2, "avx2")  # per column: 5 adds into 4 group sums, 4 multiplies
        assert (c.adds, c.mults) == (2 * (5 + 4), 2 * 4)
        assert c.reads["omega_ptr"][0] == G + 3 and c.reads["col_idx"][0] == 5
        assert c.reads["x"] == (10, 32, 32) and c.writes["y"] == (6, 32, 24)
        c = M.cost(2, "avx512")  # csr rows with codes: an FMA per entry and input
        assert (c.adds, c.mults) == (2 * 5, 2 * 5) and c.reads["codes"][0] == 5
    assert B.cost(1, "avx2").reads["omega_idx"][0] == 4
    assert "omega_idx" not in A.cost(1, "avx2").reads


@pytest.mark.parametrize("fid", ["cer", "cser"])
def test_long_rows_many_groups(fid):
    """Rows of thousands of entries and hundreds of groups (the matvec kernel sums
    groups as differences of running row sums)."""
    rng = np.random.default_rng(12)
    pool = (rng.uniform(0.5, 2.0, 300) * rng.choice([-1, 1], 300)).astype(np.float32)
    W = pool[rng.integers(0, 300, (6, 5000))]
    W[rng.random(W.shape) < 0.3] = 0
    M = formats.get(fid).from_dense(W)
    check_products(M, W, rng)
    x = rng.standard_normal(5000).astype(np.float32)
    ref = W.astype(np.float64) @ x
    scale = np.abs(W).astype(np.float64) @ np.abs(x)
    # observed ~3e-8 (CSR ~2e-8); the conformance bound 4(n+2)eps is ~2e-3 here
    assert (np.abs(M.matvec(x) - ref) <= 1e-6 * scale).all()
    assert (np.abs(M.matmul(x[:, None])[:, 0] - ref) <= 1e-6 * scale).all()


@pytest.mark.parametrize("fid", ["cer", "cser"])
def test_thread_count_does_not_change_results(fid):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread")
    rng = np.random.default_rng(13)
    W = rng.choice(np.array([0, 0, 0, 0, 0.3, -0.7, 1.1, 2.9], np.float32), (203, 157))
    W[5] = 0.3
    M = formats.get(fid).from_dense(W)
    x = rng.standard_normal(157).astype(np.float32)
    X = rng.standard_normal((157, 7)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        out = []
        for t in (1, 2):
            numba.set_num_threads(t)
            out.append((M.matvec(x), M.matmul(X), M.to_dense()))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*out, strict=True):
        assert same_bits(a, b)


@pytest.mark.parametrize("fid", ["cer", "cser"])
@pytest.mark.parametrize("shape", [(0, 0), (0, 4), (3, 0)])
def test_empty_matrix_has_empty_codebook(fid, shape):
    M = formats.get(fid).from_dense(np.zeros(shape, np.float32))
    assert M.omega.shape == (0,) and M.nnz == 0 and M.groups == 0
    assert M.row_ptr.tolist() == [0] * (shape[0] + 1)
    assert M.matvec(np.ones(shape[1], np.float32)).tolist() == [0.0] * shape[0]



# ---- corruptions that need more than one element changed ---------------------------------

MATRIX = np.random.default_rng(14).choice(
    np.array([0, 0, 0, 0, 0.5, -1.25, 2.0, 3.0], np.float32), size=(19, 29)
)


def corrupt(fid: str, **changes: np.ndarray):
    F = formats.get(fid)
    bufs, attrs = F.from_dense(MATRIX).to_buffers()
    return F, {**bufs, **changes}, attrs


@pytest.mark.parametrize("fid", ["cer", "cser"])
@pytest.mark.parametrize("what,match", [
    ("repeated omega value", "'omega' repeats"),
    ("empty omega", "'omega' is empty"),
    ("empty omega_ptr", "'omega_ptr' is empty"),
    ("unsorted group", "'col_idx' has unsorted"),
    ("column repeated in another group", "'col_idx' has unsorted or repeated"),
])
def test_check_names_structural_corruption(fid, what, match):
    M = formats.get(fid).from_dense(MATRIX)
    assert int(M.row_ptr[1]) >= 2  # row 0 has two groups: [0, e) and [e, ...)
    e = int(M.omega_ptr[1])
    assert e >= 2
    col = M.col_idx.copy()
    if what == "unsorted group":
        col[0], col[1] = col[1], col[0]
    elif what == "column repeated in another group":
        col[e] = col[0]
    changes = {
        "repeated omega value": {"omega": np.r_[M.omega[:-1], M.omega[1:2]]},
        "empty omega": {"omega": M.omega[:0]},
        "empty omega_ptr": {"omega_ptr": M.omega_ptr[:0]},
    }.get(what, {"col_idx": col})
    F, bufs, attrs = corrupt(fid, **changes)
    with pytest.raises(FormatError, match=f"^{fid}: .*{match}"):
        F.from_buffers(bufs, attrs)


def test_cer_rejects_more_groups_than_codes():
    """Row 0 replaced by K empty groups (at most K-1 are possible)."""
    A = formats.get("cer").from_dense(MATRIX)
    K = A.omega.shape[0]
    g1 = int(A.row_ptr[1])
    n0 = int(A.omega_ptr[g1])
    omega_ptr = np.r_[np.zeros(K, np.int64), A.omega_ptr[g1:].astype(np.int64) - n0]
    row_ptr = np.r_[0, K, A.row_ptr[2:].astype(np.int64) - g1 + K]
    F, bufs, attrs = corrupt("cer", row_ptr=row_ptr.astype(np.uint64),
                             omega_ptr=omega_ptr.astype(np.uint64), col_idx=A.col_idx[n0:])
    with pytest.raises(FormatError, match=f"^cer: array 'row_ptr' gives a row {K} groups"):
        F.from_buffers(bufs, attrs)
    # the same arrays with row 0 holding K-1 empty groups are valid (a padded empty row)
    bufs["row_ptr"] = (row_ptr - np.r_[0, np.ones(A.shape[0], np.int64)]).astype(np.uint64)
    bufs["omega_ptr"] = omega_ptr[1:].astype(np.uint64)
    assert same_bits(F.from_buffers(bufs, attrs).to_dense()[1:], MATRIX[1:])


def test_cser_rejects_empty_group_and_unordered_codes():
    B = formats.get("cser").from_dense(MATRIX)
    ptr = B.omega_ptr.copy()
    ptr[1] = 0
    F, bufs, attrs = corrupt("cser", omega_ptr=ptr)
    with pytest.raises(FormatError, match="^cser: array 'omega_ptr' has an empty group"):
        F.from_buffers(bufs, attrs)
    idx = B.omega_idx.copy()
    idx[0], idx[1] = idx[1], idx[0]
    F, bufs, attrs = corrupt("cser", omega_idx=idx)
    with pytest.raises(FormatError, match="^cser: array 'omega_idx' is not strictly increasing"):
        F.from_buffers(bufs, attrs)
