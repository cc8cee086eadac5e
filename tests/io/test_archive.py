"""The archive storage encoding: bit-exact round trips, size near the entropy bound,
and named errors for inconsistent buffers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactnn.coding import archive, entropy_bits
from compactnn.coding.archive import ArchiveError
from compactnn.coding.archive.buffer import header, varints
from tests.formats.strategies import arbitrary, low_entropy


def roundtrip(W: np.ndarray, coder: str | None = None) -> None:
    A = archive.encode(W, coder)
    if A is None:
        return
    if coder is not None:
        assert A.coder == coder
    D = archive.decode(A.buffer, W.shape)
    assert D.dtype == np.float32 and D.shape == W.shape
    np.testing.assert_array_equal(D.view(np.uint32), W.view(np.uint32))


@pytest.mark.parametrize("coder", [None, "ans", "adaptive"])
@settings(max_examples=40, deadline=None)
@given(W=low_entropy())
def test_roundtrip_low_entropy(W, coder):
    roundtrip(W, coder)


@pytest.mark.parametrize("coder", [None, "ans", "adaptive"])
@settings(max_examples=20, deadline=None)
@given(W=arbitrary())
def test_roundtrip_arbitrary(W, coder):
    roundtrip(W, coder)


def test_encode_keeps_the_smaller_coder():
    W = pruned(shape=(60, 90), density=0.1, k=8)
    sizes = {c: archive.encode(W, c).nbytes for c in ("ans", "adaptive")}
    assert archive.encode(W).nbytes == min(sizes.values())
    with pytest.raises(ValueError, match="unknown archive coder"):
        archive.encode(W, "zip")


def image_layer(seed=0, rows=120, side=20, k=12):
    """A first layer over flattened ``side x side`` images: a smooth mask of useful
    pixels and smooth receptive fields, so the entry ``side`` to the left (the pixel
    above) predicts an entry, as in a pruned LeNet-300-100."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    useful = np.exp(-((yy - side / 2) ** 2 + (xx - side / 2) ** 2) / (side * side / 8))
    levels = np.linspace(-1, 1, k).astype(np.float32)
    W = np.zeros((rows, side * side), np.float32)
    for r in range(rows):
        cy, cx = rng.uniform(0, side, 2)
        field = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 40.0)
        keep = rng.random((side, side)) < field * useful
        q = np.clip(np.rint((field * rng.choice([-1, 1]) + 1) / 2 * (k - 1)), 0, k - 1)
        W[r] = np.where(keep, levels[q.astype(int)], 0).reshape(-1)
    W[W == 0] = 0.0
    return W


def test_adaptive_coder_beats_static_on_structured_weights():
    W = image_layer()
    A, B = archive.encode(W, "adaptive"), archive.encode(W, "ans")
    assert A.attrs["period"] % 20 in (0, 1, 19)  # a pixel above, found by the encoder
    assert A.nbytes < 0.85 * B.nbytes
    roundtrip(W, "adaptive")


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (1, 300), (300, 1), (3, 3)])
def test_adaptive_tiny_and_thin_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    W = np.where(rng.random(shape) < 0.5, rng.choice([-0.5, 0.25, -0.0], shape), 0.0)
    roundtrip(W.astype(np.float32), "adaptive")


def test_adaptive_limits_fall_back_to_ans():
    W = np.arange(300 * 4, dtype=np.float32).reshape(300, 4) % 300 + 1  # 300 values > 256
    assert archive.encode(W, "adaptive") is None
    assert archive.encode(W).coder == "ans"


@pytest.mark.parametrize("gap", [0, 1, 2, 3, 4, 7, 8, 2**15 - 1, 2**16, 2**17 + 5, 2**20 - 3])
def test_single_gaps_roundtrip(gap):
    W = np.zeros((1, 2**20 + 2), np.float32)
    W[0, gap] = 1.5
    W[0, -1] = -2.0
    roundtrip(W)


def pruned(seed=0, shape=(300, 784), density=0.04, k=32):
    rng = np.random.default_rng(seed)
    W = np.zeros(shape, np.float32)
    mask = rng.random(shape) < density
    p = 1.0 / np.arange(1, k + 1)
    W[mask] = rng.standard_normal(k).astype(np.float32)[rng.choice(k, mask.sum(), p=p / p.sum())]
    return W


def test_size_is_near_the_entropy_bound():
    W = pruned()
    A = archive.encode(W)
    bound = entropy_bits(W) / 8
    assert A.nbytes < 1.05 * bound  # i.i.d. mask: gap coding reaches the bound + tables


def test_too_many_values_is_not_archived():
    W = np.random.default_rng(1).standard_normal((50, 50)).astype(np.float32)
    assert archive.encode(W) is None


FIELDS = ("version", "nnz", "values", "gap_symbols", "words")


def with_field(buf: np.ndarray, name: str, value: int) -> np.ndarray:
    """The buffer with one header field (uint32) replaced."""
    out = buf.copy()
    i = 4 * FIELDS.index(name)
    out[i:i + 4] = np.array([value], "<u4").view(np.uint8)
    return out


def corrupt(mutate, coder="ans"):
    W = pruned(shape=(40, 60), density=0.2, k=8)
    A = archive.encode(W, coder)
    assert A.attrs["nnz"] == np.count_nonzero(W)
    buf, shape = mutate(A.buffer.copy(), A.attrs, W.shape)
    with pytest.raises(ArchiveError, match="archive"):
        archive.decode(buf, shape)


@pytest.mark.parametrize("mutate", [
    lambda b, a, s: (with_field(b, "version", 3), s),
    lambda b, a, s: (with_field(b, "nnz", s[0] * s[1] + 1), s),
    lambda b, a, s: (with_field(b, "nnz", 2**32 - 1), s),
    lambda b, a, s: (with_field(b, "values", 0), s),
    lambda b, a, s: (with_field(b, "gap_symbols", 1000), s),
    lambda b, a, s: (with_field(b, "words", a["words"] + 1), s),
    lambda b, a, s: (b[:-4], s),
    lambda b, a, s: (b[:12], s),
    lambda b, a, s: (b.astype(np.uint16), s),
    lambda b, a, s: (b, (2**20, 2**12)),
    lambda b, a, s: (with_field(b, "nnz", a["nnz"] * 3), s),  # stream ends early / trailing
    lambda b, a, s: (b, (4, 5)),  # positions beyond a smaller matrix
    lambda b, a, s: (np.concatenate([b[:-4], np.zeros(4, np.uint8)]), s),
    lambda b, a, s: (np.concatenate([b[:20], np.full(4, 255, np.uint8), b[24:]]), s),  # NaN
    lambda b, a, s: (np.concatenate([b[:20], np.zeros(4, np.uint8), b[24:]]), s),  # +0.0
], ids=lambda f: "")
def test_inconsistent_archives_raise(mutate):
    corrupt(mutate)


ADAPTIVE_FIELDS = ("version", "nnz", "values", "period", "bytes")


def with_adaptive_field(buf: np.ndarray, name: str, value: int) -> np.ndarray:
    """A version 2 buffer with one header field (uint32) replaced."""
    out = buf.copy()
    i = 4 * ADAPTIVE_FIELDS.index(name)
    out[i:i + 4] = np.array([value], "<u4").view(np.uint8)
    return out


def as_v2(buf: np.ndarray) -> np.ndarray:
    """The version 2 buffer of the same matrix as version 3 buffer ``buf``."""
    a = header(buf)
    head = np.array([2, a["nnz"], a["values"], a["period"], a["bytes"]], "<u4").view(np.uint8)
    return np.concatenate([head, buf[a["offset"]:]])


def with_v3(buf: np.ndarray, nnz: int | None = None, values: int | None = None,
            period: int | None = None, head: bytes | None = None) -> np.ndarray:
    """Version 3 buffer ``buf`` with its varint header rebuilt from the fields given."""
    a = header(buf)
    fields = [a["nnz"] if nnz is None else nnz, a["values"] if values is None else values,
              a["period"] if period is None else period]
    raw = head if head is not None else bytes([3]) + varints(fields)
    return np.concatenate([np.frombuffer(raw, np.uint8), buf[a["offset"]:]])


def omega_at(b: np.ndarray) -> int:
    return header(b)["offset"]


@pytest.mark.parametrize("mutate", [
    lambda b, a, s: (with_v3(b, nnz=s[0] * s[1] + 1), s),
    lambda b, a, s: (with_v3(b, nnz=a["nnz"] + 1), s),  # the stream disagrees
    lambda b, a, s: (with_v3(b, values=0), s),
    lambda b, a, s: (with_v3(b, values=300), s),
    lambda b, a, s: (with_v3(b, period=1), s),
    lambda b, a, s: (with_v3(b, period=10**6), s),
    lambda b, a, s: (with_v3(b, head=bytes([3]) + varints([a["nnz"]]) +
                             bytes([a["values"] | 0x80, 0]) + varints([a["period"]])),
                     s),  # a varint not in its shortest form
    lambda b, a, s: (with_v3(b, head=bytes([3]) + b"\xff" * 6), s),  # too long
    lambda b, a, s: (b[:2], s),  # ends inside the header
    lambda b, a, s: (b[:-1], s),
    lambda b, a, s: (np.concatenate([b, np.zeros(8, np.uint8)]), s),  # trailing data
    lambda b, a, s: (np.concatenate([b[:omega_at(b)], b[omega_at(b) + 4:omega_at(b) + 8],
                                     b[omega_at(b):omega_at(b) + 4], b[omega_at(b) + 8:]]),
                     s),  # unsorted
    lambda b, a, s: (np.concatenate([b[:omega_at(b)], np.full(4, 255, np.uint8),
                                     b[omega_at(b) + 4:]]), s),  # NaN
    lambda b, a, s: (np.concatenate([b[:omega_at(b)], np.zeros(4, np.uint8),
                                     b[omega_at(b) + 4:]]), s),  # +0.0
    lambda b, a, s: (b, (2**20, 2**12)),
    # version 2 (still read): the same checks on its uint32 header
    lambda b, a, s: (with_adaptive_field(as_v2(b), "nnz", s[0] * s[1] + 1), s),
    lambda b, a, s: (with_adaptive_field(as_v2(b), "values", 300), s),
    lambda b, a, s: (with_adaptive_field(as_v2(b), "period", 1), s),
    lambda b, a, s: (with_adaptive_field(as_v2(b), "bytes", a["bytes"] + 1), s),
    lambda b, a, s: (with_adaptive_field(np.concatenate([as_v2(b), np.zeros(8, np.uint8)]),
                                         "bytes", a["bytes"] + 8), s),  # trailing data
], ids=lambda f: "")
def test_inconsistent_adaptive_archives_raise(mutate):
    corrupt(mutate, "adaptive")


def test_adaptive_archives_are_version_3_and_version_2_still_decodes():
    W = pruned(shape=(40, 60), density=0.2, k=8)
    A = archive.encode(W, "adaptive")
    a = A.attrs
    assert a["version"] == 3 and A.coder == "adaptive" and a["offset"] <= 1 + 3 * 2
    old = as_v2(A.buffer)
    assert old.size == A.nbytes + 20 - a["offset"]
    for buf in (A.buffer, old):
        assert archive.decode(buf, W.shape).tobytes() == W.tobytes()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3))
def test_varint_header_roundtrip(fields):
    buf = np.frombuffer(bytes([3]) + varints(fields) + b"\0" * 8, np.uint8)
    a = header(buf)
    assert [a["nnz"], a["values"], a["period"]] == fields
    assert a["offset"] == 1 + len(varints(fields))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 300))
def test_garbage_adaptive_streams_raise_or_decode(seed, cut):
    """A damaged stream decodes to some matrix or raises ArchiveError, never anything
    else (the file's CRC-32 is what catches damage)."""
    W = pruned(shape=(30, 40), density=0.2, k=6)
    A = archive.encode(W, "adaptive")
    buf = A.buffer.copy()
    rng = np.random.default_rng(seed)
    start = A.attrs["offset"] + 4 * A.attrs["values"]
    buf[start:] = rng.integers(0, 256, buf.size - start, dtype=np.uint8)
    try:
        D = archive.decode(buf, W.shape)
    except ArchiveError:
        return
    assert D.shape == W.shape and D.dtype == np.float32
