"""Crafted files: every one gets a named ``CompactFileError`` (a ValueError), never a
crash, a hang or an oversized allocation.

Byte-level cases edit the raw file; model-level cases are *reforged* with fresh
checksums (``helpers.reforge``) so that only the deeper validation can catch them.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch

from compactnn import zoo
from compactnn.coding.archive.buffer import header, varints
from compactnn.io import CompactFileError, inspect, load, save
from compactnn.nn import to_compact
from tests.io.helpers import Net, constrain_, net, parts, raw_file, reforge

KWARGS = {"in_features": 16}
PEAK_LIMIT = 64 * 2**20  # bytes of numpy/Python memory any rejected load may use


def build(policy, storage: str) -> bytes:
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", **KWARGS), 0, sparsity=0.9)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.cnn"
        save(to_compact(model, policy, storage=storage), p, zoo=("lenet300", KWARGS))
        return p.read_bytes()


@pytest.fixture(scope="module")
def raw_base() -> bytes:
    """Layers '1' csr, '3' sham, '5' cer, stored raw."""
    return build({"1": "csr", "3": "sham", "5": "cer"}, "raw")


@pytest.fixture(scope="module")
def archive_base() -> bytes:
    return build("smallest", "archive")


@pytest.fixture(scope="module")
def conv_base(tmp_path_factory) -> bytes:
    p = tmp_path_factory.mktemp("conv") / "net.cnn"
    save(to_compact(net(), "csr"), p)
    return p.read_bytes()


def rejects(tmp_path, data: bytes, match: str, skeleton=None) -> None:
    path = tmp_path / "evil.cnn"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(CompactFileError, match=match):
            load(path, model=skeleton)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT


# ---- byte-level cases --------------------------------------------------------------------

def set_header(raw: bytes, edit, fix_crc: bool = True) -> bytes:
    """Edit the header JSON and the description; by default the description's own
    checksum is recomputed so the later checks are reached."""
    from compactnn.io.container import canonical_json, crc32

    _, head, desc, data = parts(raw)
    edit(head, desc)
    if fix_crc:
        body = {k: v for k, v in desc.items() if k != "crc32"}
        desc["crc32"] = crc32(canonical_json(body).encode("ascii"))
    head["__metadata__"]["compactnn"] = canonical_json(desc)
    return raw_file(head, data)


def first_tensor(head: dict) -> str:
    return next(k for k in head if k != "__metadata__")


BYTE_CASES = {
    "empty file": (lambda r: b"", "truncated"),
    "seven bytes": (lambda r: r[:7], "truncated"),
    "truncated data": (lambda r: r[:-10], "trailing|exceed|offsets"),
    "truncated header": (lambda r: r[:40], "larger than the file"),
    "header larger than file": (
        lambda r: (len(r)).to_bytes(8, "little") + r[8:], "larger than the file"),
    "header length 2**63": (lambda r: (2**63).to_bytes(8, "little") + r[8:],
                            "larger than the file"),
    "header length 1": (lambda r: (1).to_bytes(8, "little") + r[8:], "out of range"),
    "header not ASCII": (lambda r: r[:8] + b"\xff" + r[9:], "not ASCII"),
    "header not JSON": (lambda r: raw_file({}, b"")[:8] + b"{nope    ", "not valid JSON"),
    "header is a list": (lambda r: (8).to_bytes(8, "little") + b"[1,2]   ", "not a JSON object"),
    "deeply nested header": (
        lambda r: (200000).to_bytes(8, "little") + b"[" * 100000 + b"]" * 100000,
        "nested too deeply|not valid JSON"),
    "duplicate keys": (lambda r: (24).to_bytes(8, "little") + b'{"a":1,"a":2}' + b" " * 11,
                       "duplicate JSON key"),
    "NaN in header": (lambda r: (16).to_bytes(8, "little") + b'{"a":NaN}' + b" " * 7,
                      "NaN"),
    "plain safetensors file": (
        lambda r: __import__("safetensors.numpy").numpy.save({"w": np.ones(3, np.float32)}),
        "not a compactnn file"),
    "description not JSON": (
        lambda r: raw_file({"__metadata__": {"compactnn": "{oops"}}, b""), "not valid JSON"),
    "description not canonical": (
        lambda r: (lambda n, h, d, data: raw_file(
            {**h, "__metadata__": {"compactnn": json.dumps(d, sort_keys=True)}}, data))(*parts(r)),
        "canonical"),
    "description checksum mismatch": (
        lambda r: set_header(r, lambda h, d: d["metadata"].update(x=1), fix_crc=False),
        "description checksum mismatch"),
    "tensor table checksum mismatch": (
        lambda r: set_header(r, lambda h, d: d.update(table_crc32="00000000")),
        "tensor table checksum"),
    "tensors out of canonical order": (
        lambda r: (lambda n, h, d, data: raw_file(
            {"__metadata__": h["__metadata__"], **dict(reversed(
                [(k, v) for k, v in h.items() if k != "__metadata__"]))}, data))(*parts(r)),
        "offsets"),
    "overlapping offsets": (
        lambda r: set_header(r, lambda h, d: h[list(h)[2]].update(
            data_offsets=[0, h[list(h)[2]]["data_offsets"][1] - h[list(h)[2]]["data_offsets"][0]])),
        "offsets"),
    "offsets beyond the data": (
        lambda r: set_header(r, lambda h, d: h[first_tensor(h)].update(
            data_offsets=[0, 10**12], shape=[250 * 10**9])), "offsets"),
    "trailing bytes": (lambda r: r + b"\0" * 8, "trailing bytes"),
    "shape disagrees with span": (
        lambda r: set_header(r, lambda h, d: h[first_tensor(h)]["shape"].__setitem__(0, 1)),
        "disagree with shape"),
    "shape product overflows": (
        lambda r: set_header(r, lambda h, d: h[first_tensor(h)].update(shape=[2**40, 2**40])),
        "disagree with shape"),
    "unknown dtype": (
        lambda r: set_header(r, lambda h, d: h[first_tensor(h)].update(dtype="C64")),
        "bad dtype"),
    "negative dimension": (
        lambda r: set_header(r, lambda h, d: h[first_tensor(h)].update(shape=[-4])),
        "bad dtype or shape"),
    "tensor missing from the checksum table": (
        lambda r: set_header(r, lambda h, d: d["tensors"].pop(first_tensor(h))),
        "do not match the description"),
    "flipped data byte": (lambda r: r[:-3] + bytes([r[-3] ^ 0x10]) + r[-2:], "checksum"),
    "flipped header byte": (
        lambda r: r[:30] + bytes([r[30] ^ 0x01]) + r[31:], "checksum|canonical|JSON|compactnn"),
}


@pytest.mark.parametrize("case", sorted(BYTE_CASES))
def test_byte_level(tmp_path, raw_base, case):
    make, match = BYTE_CASES[case]
    rejects(tmp_path, make(raw_base), match)


def test_every_single_byte_change_is_detected(tmp_path, archive_base):
    from compactnn.io.container import decode_file

    rng = np.random.default_rng(0)
    header_end = 8 + int.from_bytes(archive_base[:8], "little")
    # every byte of the length and header; in the data (all behind the same per-tensor
    # CRC-32 check) every 5th byte
    for i in [*range(header_end), *range(header_end, len(archive_base), 5)]:
        bad = bytearray(archive_base)
        bad[i] ^= int(rng.integers(1, 256))
        with pytest.raises(CompactFileError):
            decode_file(bytes(bad))


# ---- model-level cases (valid checksums) ---------------------------------------------------

def layer(d, name="1"):
    return d["layers"][name]


def set_array(name, fn):
    def edit(a, d):
        a[name] = fn(a[name])
    return edit


def huffman_overfull(a):
    out = a.astype(np.uint64)
    out[:] = 0
    out[0] = 3  # three codes of length 1: Kraft sum 1.5
    return out


MODEL_CASES = {
    "unknown container version": (lambda a, d: d.update(compactnn=2), "container version"),
    "unknown format id": (lambda a, d: layer(d).update(format="zzz"), "unknown format 'zzz'"),
    "unsupported format version": (lambda a, d: layer(d).update(version=99), "version 99"),
    "unknown zoo model": (lambda a, d: d["model"]["zoo"].update(name="resnet999"),
                          "unknown zoo model"),
    "zoo model too large": (
        lambda a, d: d["model"]["zoo"].update(kwargs={"in_features": 10**9}),
        "more than the limit"),
    "zoo kwargs rejected": (
        lambda a, d: d["model"]["zoo"].update(kwargs={"bogus": 1}), "cannot build zoo model"),
    "negative zoo dimension": (
        lambda a, d: d["model"]["zoo"].update(kwargs={"in_features": -5}),
        "cannot build zoo model"),
    "zoo entry malformed": (lambda a, d: d["model"].update(zoo=[1]), "bad zoo model entry"),
    "layer not in the model": (lambda a, d: d["layers"].update({"9": layer(d)}),
                               "does not exist"),
    "invalid layer name": (lambda a, d: d["layers"].update({"../x": layer(d)}),
                           "invalid layer name"),
    "layer shape mismatch": (lambda a, d: layer(d).update(shape=[300, 17]), "file has shape"),
    "unknown layer kind": (lambda a, d: layer(d).update(kind="lstm"), "unknown layer kind"),
    "unknown storage": (lambda a, d: layer(d).update(storage="zip"), "storage"),
    "attrs per group missing": (lambda a, d: layer(d).update(attrs=[]), "one attrs object"),
    "bias flag mismatch": (lambda a, d: layer(d).update(bias=False), "bias"),
    "wrong index dtype": (set_array("1.weight.indices", lambda x: x.astype(np.float32)),
                          "dtype"),
    "column index out of range": (
        set_array("1.weight.indices", lambda x: np.full_like(x, 16)), "out of range"),
    "non-monotone pointers": (
        set_array("1.weight.indptr", lambda x: x[::-1].copy()), "indptr"),
    "missing format array": (lambda a, d: a.pop("1.weight.indptr"), "missing arrays"),
    "corrupt Huffman table": (set_array("3.weight.length_counts", huffman_overfull),
                              "sham.*length_counts"),
    "truncated Huffman stream": (set_array("3.weight.words", lambda x: x[:1].copy()),
                                 "sham.*words"),
    "NaN in a state tensor": (set_array("1.bias", lambda x: np.full_like(x, np.nan)),
                              "NaN or Inf"),
    "state tensor wrong shape": (set_array("1.bias", lambda x: x[:-1].copy()), "state tensor"),
    "state tensor wrong dtype": (set_array("1.bias", lambda x: x.astype(np.float64)),
                                 "state tensor"),
    "state tensor missing": (lambda a, d: a.pop("5.bias"), "missing"),
    "unreferenced tensor": (lambda a, d: a.update(extra=np.zeros(3, np.uint8)),
                            "not referenced"),
    "metadata not an object": (lambda a, d: d.update(metadata=[]), "metadata"),
    "model entry missing": (lambda a, d: d.pop("model"), "no model entry"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_model_level(tmp_path, raw_base, case):
    edit, match = MODEL_CASES[case]
    rejects(tmp_path, reforge(raw_base, edit), match)


def archive_key(a):
    return next(k for k in a if k.endswith(".archive"))


def archive_edit(fn):
    """Edit the first archive buffer (an adaptive one: version 3, varint header)."""
    def edit(a, d):
        key = archive_key(a)
        a[key] = fn(a[key].copy())
    return edit


def set_u32(offset, value):
    def fn(b):
        b[offset:offset + 4] = np.array([value], "<u4").view(np.uint8)
        return b
    return fn


def v2(fn):
    """``fn`` applied to the version 2 form of a version 3 buffer (uint32 header fields at
    offsets 0..19: version, nnz, values, period, bytes)."""
    def edit(b):
        h = header(b)
        head = np.array([2, h["nnz"], h["values"], h["period"], h["bytes"]], "<u4")
        return fn(np.concatenate([head.view(np.uint8), b[h["offset"]:]]))
    return edit


def v3_nnz(value):
    def fn(b):
        h = header(b)
        head = bytes([3]) + varints([value, h["values"], h["period"]])
        return np.concatenate([np.frombuffer(head, np.uint8), b[h["offset"]:]])
    return fn


def garbage_stream(b):
    h = header(b)
    start = h["offset"] + 4 * h["values"]
    tail = np.random.default_rng(1).integers(1, 255, b.size - start, dtype=np.uint8)
    return np.concatenate([b[:start], tail])


ARCHIVE_CASES = {
    "nnz larger than the matrix": (archive_edit(v3_nnz(2**32 - 1)), "nnz"),
    "nnz larger than the matrix (version 2)": (archive_edit(v2(set_u32(4, 2**32 - 1))), "nnz"),
    "unknown archive version": (archive_edit(set_u32(0, 7)), "unsupported version"),
    "garbage stream": (archive_edit(garbage_stream), "archive"),
    "codebook NaN": (archive_edit(v2(lambda b: np.concatenate(
        [b[:20], np.full(4, 255, np.uint8), b[24:]]))), "NaN"),
    "buffer shorter than its header says": (archive_edit(v2(lambda b: b[:-4].copy())),
                                            "header says"),
    "stream cut short (varint header)": (archive_edit(lambda b: b[:-4].copy()),
                                         "the decoder read"),
    "buffer shorter than a header": (archive_edit(lambda b: b[:2].copy()), "shorter than"),
}


@pytest.mark.parametrize("case", sorted(ARCHIVE_CASES))
def test_archive_level(tmp_path, archive_base, case):
    edit, match = ARCHIVE_CASES[case]
    rejects(tmp_path, reforge(archive_base, edit), match)


def test_conv_geometry_rejected(tmp_path, conv_base):
    rejects(tmp_path, reforge(conv_base, lambda a, d: d["layers"]["conv"]["conv"].update(
        kernel=[0, 3])), "convolution geometry", skeleton=Net())
    rejects(tmp_path, reforge(conv_base, lambda a, d: d["layers"]["conv"]["conv"].update(
        stride=[2, 1])), "file has convolution", skeleton=Net())


def test_suite_size():
    assert len(BYTE_CASES) + len(MODEL_CASES) + len(ARCHIVE_CASES) >= 30


def test_inspect_validates_too(tmp_path, raw_base):
    p = tmp_path / "x.cnn"
    p.write_bytes(raw_base[:-1])
    with pytest.raises(CompactFileError):
        inspect(p)
