"""Format-specific corruptions that ``check()`` must name: out-of-range indices,
non-monotone pointers, truncated bit streams. Each format adds its cases here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from compactnn import formats
from compactnn.formats import FormatError


def set_at(pos: float, value: Callable[[object], int]):
    """Mutation: widen to uint64 and set the element at relative position ``pos`` to
    ``value(M)``."""

    def mutate(arr: np.ndarray, M) -> np.ndarray:
        out = arr.astype(np.uint64)
        out[int(pos * (out.shape[0] - 1))] = value(M)
        return out

    return mutate


def swap_middle(arr: np.ndarray, M) -> np.ndarray:
    """Mutation: make a pointer array decrease somewhere in the middle."""
    out = arr.astype(np.uint64)
    i = out.shape[0] // 2
    out[i] = out[-1] + 1
    return out


CASES: dict[str, list[tuple[str, str, Callable]]] = {
    "csr": [
        ("column index out of range", "indices", set_at(0.5, lambda M: M.shape[1])),
        ("non-monotone indptr", "indptr", swap_middle),
        ("indptr not starting at 0", "indptr", set_at(0.0, lambda M: 1)),
    ],
    "index_map": [
        ("code out of range", "words", lambda a, M: np.r_[np.uint32(0xFFFFFFFF), a[1:]]),
        ("truncated words", "words", lambda a, M: a[:-2]),
        ("non-zero padding", "words", lambda a, M: np.r_[a[:-1], np.uint32(1)]),
    ],
    "ham": [
        ("non-monotone row_bits", "row_bits", swap_middle),
        ("row_bits beyond the words", "row_bits", set_at(1.0, lambda M: 32 * M.words.size)),
        ("over-full code", "length_counts", set_at(0.0, lambda M: 2)),
        ("code longer than 32 bits", "length_counts",
         lambda a, M: np.r_[a, np.zeros(30, a.dtype), np.ones(1, a.dtype)]),
        ("stream does not decode", "words", lambda a, M: np.r_[~a[:-2], a[-2:]]),
    ],
    "sham": [
        ("column index out of range", "col_idx", set_at(0.5, lambda M: M.shape[1])),
        ("non-monotone row_ptr", "row_ptr", swap_middle),
        ("non-monotone row_bits", "row_bits", swap_middle),
        ("row_bits beyond the words", "row_bits", set_at(1.0, lambda M: 32 * M.words.size)),
        ("over-full code", "length_counts", set_at(0.0, lambda M: 2)),
        ("row_bits off a code boundary", "row_bits", lambda a, M: np.where(
            np.arange(a.size) == a.size // 2, a + 1, a).astype(a.dtype)),
    ],
    "cer": [
        ("column index out of range", "col_idx", set_at(0.5, lambda M: M.shape[1])),
        ("repeated column in a row", "col_idx", set_at(0.0, lambda M: int(M.col_idx[1]))),
        ("non-monotone omega_ptr", "omega_ptr", swap_middle),
        ("non-monotone row_ptr", "row_ptr", swap_middle),
        ("row_ptr not starting at 0", "row_ptr", set_at(0.0, lambda M: 1)),
    ],
    "cser": [
        ("column index out of range", "col_idx", set_at(0.5, lambda M: M.shape[1])),
        ("repeated column in a row", "col_idx", set_at(0.0, lambda M: int(M.col_idx[1]))),
        ("non-monotone omega_ptr", "omega_ptr", swap_middle),
        ("non-monotone row_ptr", "row_ptr", swap_middle),
        ("row_ptr not starting at 0", "row_ptr", set_at(0.0, lambda M: 1)),
        ("code out of range", "omega_idx", set_at(0.5, lambda M: M.omega.shape[0])),
        ("implicit code 0 stored", "omega_idx", set_at(0.5, lambda M: 0)),
    ],
    "permseq": [
        ("perm index out of range", "perm", set_at(0.5, lambda M: M.shape[1])),
        ("perm row not a permutation", "perm", set_at(0.5, lambda M: 0)),
        ("group out of range", "group", set_at(0.5, lambda M: M.groups)),
        ("NaN in base", "base", lambda a, M: np.where(a == a.flat[0], np.nan, a).astype(a.dtype)),
    ],
    "lossless_float": [
        ("over-full code", "length_counts", set_at(0.0, lambda M: 2)),
        ("stream does not decode", "words", lambda a, M: np.r_[~a[:-2], a[-2:]]),
        ("non-monotone block_bits", "block_bits", swap_middle),
        ("block_bits beyond the words", "block_bits", set_at(1.0, lambda M: 32 * M.words.size)),
        ("non-zero tail padding", "tails", lambda a, M: np.r_[a[:-1], np.uint32(1)]),
        ("truncated tails", "tails", lambda a, M: a[:-2]),
        ("head with a tail bit", "omega", lambda a, M: (a.view(np.uint32) | np.uint32(1)
                                                       ).view(np.float32)),
        ("head with the sign bit", "omega", lambda a, M: -a),
        ("head repeated", "omega", lambda a, M: np.r_[a[:1], a[:-1]]),
    ],
    "blockdiag": [
        ("row index out of range", "rows", set_at(0.5, lambda M: M.shape[0])),
        ("rows not a permutation", "rows", set_at(0.0, lambda M: int(M.rows[1]))),
        ("cols not a permutation", "cols", set_at(0.0, lambda M: int(M.cols[1]))),
        ("row_ptr past the last row", "row_ptr", set_at(1.0, lambda M: M.shape[0] + 1)),
        ("row_ptr not starting at 0", "row_ptr", set_at(0.0, lambda M: 1)),
        ("col_ptr past the last column", "col_ptr", set_at(1.0, lambda M: M.shape[1] + 1)),
    ],
    "packed_codes": [
        ("code out of range", "codes", lambda a, M: np.full_like(a, 0xFF)),
        ("non-zero padding", "codes", lambda a, M: np.where(
            np.arange(a.shape[1]) == a.shape[1] - 1, np.uint8(1), a).astype(np.uint8)),
        ("codebook NaN", "codebook", lambda a, M: np.r_[a[:1], np.float32(np.nan), a[2:]]
         .astype(np.float32)),
        ("codebook repeats a value", "codebook", lambda a, M: np.r_[a[:1], a[:-1]]),
        ("codes one row short", "codes", lambda a, M: a[:-1]),
    ],
    "compact_blocks": [
        ("row index out of range", "rows", set_at(0.5, lambda M: M.shape[0])),
        ("rows not a permutation", "rows", set_at(0.0, lambda M: int(M.rows[1]))),
        ("row_ptr past the last row", "row_ptr", set_at(1.0, lambda M: M.shape[0] + 1)),
        ("col_ptr not starting at 0", "col_ptr", set_at(0.0, lambda M: 1)),
        ("a block's column index out of range", "b0_indices",
         set_at(0.5, lambda M: M.parts[0].shape[1])),
        ("a block's pointers non-monotone", "b0_indptr", swap_middle),
    ],
}

MATRIX = np.random.default_rng(5).choice(
    np.array([0, 0, 0, 0, 0.5, -1.25, 2.0, 3.0], np.float32), size=(19, 29)
)


@pytest.mark.parametrize(
    "fid,desc,name,mutate",
    [(fid, *case) for fid, cases in CASES.items() for case in cases],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_check_names_corruption(fid, desc, name, mutate):
    F = formats.get(fid)
    M = F.from_dense(MATRIX)
    bufs, attrs = M.to_buffers()
    bufs = dict(bufs)
    bufs[name] = mutate(bufs[name], M)
    with pytest.raises(FormatError, match=fid):
        F.from_buffers(bufs, attrs)


def test_every_format_has_specific_cases():
    assert set(CASES) >= set(formats.registered()) - {"dense"}
