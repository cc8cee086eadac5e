"""The packed layout: round trips of zoo and custom models, smaller files than the
safetensors layout, per-tensor coder choice, and named errors for damaged or forged
packed files (checksums, decompression bombs, inconsistent blob tables)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compactnn import zoo
from compactnn.io import CompactFileError, inspect, load, packed, save
from compactnn.io.container import canonical_json
from compactnn.nn import to_compact
from tests.io.helpers import Net, constrain_, net


def lenet(seed: int = 0):
    torch.manual_seed(seed)
    return constrain_(zoo.build("lenet300", in_features=64), seed, sparsity=0.9)


SPEC = ("lenet300", {"in_features": 64})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("packed")
    cm = to_compact(lenet(), "smallest", storage="auto")
    plain, small = d / "plain.cnn", d / "packed.cnn"
    save(cm, plain, zoo=SPEC, metadata={"acc": 0.5})
    save(cm, small, zoo=SPEC, metadata={"acc": 0.5}, pack=True)
    return cm, plain, small


def test_packed_roundtrip_is_exact_and_smaller(files):
    cm, plain, small = files
    a, b = load(plain), load(small)
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(a(x), b(x)) and torch.equal(b(x), cm(x))
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert small.stat().st_size < plain.stat().st_size
    ia, ib = inspect(plain), inspect(small)
    assert ib.metadata == {"acc": 0.5}
    assert [li.stored_bytes for li in ia.layers] == [li.stored_bytes for li in ib.layers]
    assert sum(li.stored_bytes for li in ib.layers) + ib.state_bytes + ib.header_bytes == \
        ib.file_bytes
    assert ib.header_bytes < ia.header_bytes and ib.state_bytes < ia.state_bytes


def test_packed_file_is_safetensors_and_deterministic(files, tmp_path):
    from safetensors.numpy import load as st_load

    cm, _, small = files
    raw = small.read_bytes()
    arrays = st_load(raw)
    assert list(arrays) == ["compactnn"] and arrays["compactnn"].dtype == np.uint8
    again = tmp_path / "again.cnn"
    save(cm, again, zoo=SPEC, metadata={"acc": 0.5}, pack=True)
    assert again.read_bytes() == raw


def test_custom_model_with_batch_norm_roundtrip(tmp_path):
    model = net()
    cm = to_compact(model, "smallest")
    path = tmp_path / "net.cnn"
    save(cm, path, pack=True)
    back = load(path, model=Net())
    x = torch.randn(3, 2, 8, 8)
    assert torch.equal(back(x), cm(x))
    for k, v in cm.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_coder_is_chosen_per_tensor():
    rng = np.random.default_rng(0)
    tensors = {"big": rng.standard_normal(400).astype(np.float32) * 0.01,
               "tiny": np.array([0.5], np.float32), "ints": np.arange(5, dtype=np.int64)}
    raw = packed.encode(tensors, {"x": 1})
    arrays, desc, stored, _ = packed.decode(raw)
    for k, v in tensors.items():
        assert arrays[k].dtype == v.dtype and arrays[k].tobytes() == v.tobytes()
    assert desc == {"x": 1}
    assert stored["big"] < tensors["big"].nbytes  # the float coder
    assert stored["tiny"] == 4 and stored["ints"] == 40  # raw


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=200))
def test_any_float_bits_roundtrip(words):
    a = np.array(words, np.uint32).view(np.float32)
    raw = packed.encode({"t": a}, {})
    arrays, *_ = packed.decode(raw)
    assert arrays["t"].view(np.uint32).tolist() == words


# ---- forged files ---------------------------------------------------------------------


def forge(desc_text: bytes, data: bytes, *, u: int | None = None, deflated: bytes | None = None,
          crc: bool = True) -> bytes:
    """A packed file around a description and tensor bytes (valid CRC unless told)."""
    z = deflated if deflated is not None else packed._deflate(desc_text)
    body = (len(z).to_bytes(4, "little") + (len(desc_text) if u is None else u).to_bytes(
        4, "little") + z + data)
    blob = body + ((zlib.crc32(body) if crc else 0) & 0xFFFFFFFF).to_bytes(4, "little")
    header = packed._outer_header(len(blob))
    return len(header).to_bytes(8, "little") + header + blob


def desc_of(blobs) -> bytes:
    return canonical_json({"blobs": blobs}).encode("ascii")


def test_forge_helper_makes_valid_files():
    raw = forge(desc_of([["a", "F32", [2], "raw", 8]]), np.ones(2, np.float32).tobytes())
    arrays, desc, *_ = packed.decode(raw)
    assert arrays["a"].tolist() == [1.0, 1.0] and desc == {}


ONES = np.ones(2, np.float32).tobytes()


@pytest.mark.parametrize("raw, match", [
    (forge(desc_of([["a", "F32", [2], "raw", 8]]), ONES, crc=False), "checksum mismatch"),
    (forge(desc_of([["a", "F32", [2], "raw", 8]]), ONES, u=packed.MAX_DESCRIPTION + 1),
     "exceeds the limit"),
    (forge(desc_of([["a", "F32", [2], "raw", 8]]), ONES, u=10), "does not hold exactly"),
    (forge(desc_of([["a", "F32", [2], "raw", 8]]), ONES, deflated=b"\xff" * 9),
     "does not decompress|does not hold exactly"),
    (forge(b'{"blobs": []}', b""), "canonical form"),
    (forge(b'{"blobs":[],"blobs":[]}', b""), "duplicate JSON key"),
    (forge(b"[1]", b""), "not a JSON object"),
    (forge(b'{"a":1}', b""), "no blob table"),
    (forge(desc_of([["a", "F32", [3], "raw", 8]]), ONES), "do not hold"),
    (forge(desc_of([["a", "F32", [2], "raw", 8]]), ONES + b"\0"), "blob holds"),
    (forge(desc_of([["a", "F32", [2], "raw", 8], ["a", "F32", [0], "raw", 0]]), ONES),
     "stored twice"),
    (forge(desc_of([["a", "X9", [2], "raw", 8]]), ONES), "bad blob entry"),
    (forge(desc_of([["a", "F32", [-2], "raw", 8]]), ONES), "bad blob entry"),
    (forge(desc_of([["a", "F32", [2], "zip", 8]]), ONES), "bad blob entry"),
    (forge(desc_of([["a", "I32", [2], "float", 8]]), ONES), "non-empty F32"),
    (forge(desc_of([["a", "F32", [10**9], "float", 8]]), ONES), "cannot fit"),
    (forge(desc_of([["a", "F32", [60], "float", 8]]), ONES), "float decoder read"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_forged_packed_files_raise(tmp_path, raw, match):
    with pytest.raises(CompactFileError, match=match):
        packed.decode(raw)
    p = tmp_path / "f.cnn"
    p.write_bytes(raw)
    with pytest.raises(CompactFileError):
        load(p, model=Net())


def test_description_uses_the_preset_dictionary(files):
    """packed/2 deflates with DICTIONARY: smaller than plain DEFLATE, and the same
    bytes inflated without the dictionary are refused."""
    raw = files[2].read_bytes()
    assert packed.LAYOUT == "packed/2" and b'"compactnn":"packed/2"' in raw[:200]
    arrays, desc, *_ = packed.decode(raw)
    text = canonical_json({**desc, "blobs": [[k, "x", [], "raw", 0] for k in arrays]})
    assert len(packed._deflate(text.encode())) < len(packed._deflate(text.encode(), "packed/1"))
    n = int.from_bytes(raw[:8], "little")
    as_v1 = raw[:8] + packed._outer_header(len(raw) - 8 - n, "packed/1") + raw[8 + n:]
    with pytest.raises(CompactFileError, match="decompress|does not hold exactly|canonical|JSON"):
        packed.decode(as_v1)


def test_packed1_files_still_load(files, tmp_path):
    """A packed/1 file (DEFLATE without dictionary) of the same content loads the same."""
    cm, _, small = files
    arrays, desc, *_ = packed.decode(small.read_bytes())
    raw2 = packed.encode(arrays, desc)
    n = int.from_bytes(raw2[:8], "little")
    blob = raw2[8 + n:]
    d = int.from_bytes(blob[:4], "little")
    text = zlib.decompressobj(-15, zdict=packed.DICTIONARY).decompress(blob[8:8 + d])
    z = packed._deflate(text, "packed/1")
    body = len(z).to_bytes(4, "little") + blob[4:8] + z + blob[8 + d:-4]
    body += (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")
    head = packed._outer_header(len(body), "packed/1")
    old = tmp_path / "old.cnn"
    old.write_bytes(len(head).to_bytes(8, "little") + head + body)
    assert torch.equal(load(old)(torch.ones(2, 1, 8, 8)), cm(torch.ones(2, 1, 8, 8)))


def test_decompression_bomb_is_refused_before_inflating():
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    z = bomb.compress(b" " * (64 * 2**20)) + bomb.flush()  # 64 MiB of spaces in ~64 kB
    raw = forge(b"", b"", u=packed.MAX_DESCRIPTION, deflated=z)
    with pytest.raises(CompactFileError, match="does not hold exactly"):
        packed.decode(raw)


def test_every_damaged_byte_is_reported(files):
    raw = bytearray(files[2].read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.choice(len(raw), 40, replace=False):
        bad = bytearray(raw)
        bad[i] ^= 0x10
        with pytest.raises(CompactFileError):
            packed.read(bytes(bad))
    with pytest.raises(CompactFileError):
        packed.read(bytes(raw[:-1]))


def with_fixed_crc(raw: bytes) -> bytes:
    """``raw`` with the blob's CRC-32 recomputed, so the checks behind it are reached."""
    n = int.from_bytes(raw[:8], "little")
    body = raw[8 + n:-4]
    return raw[:8 + n] + body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_damage_behind_a_valid_checksum_is_a_named_error_or_a_valid_model(files, data):
    """Bytes changed in the description or the streams, the checksum made to match:
    loading raises CompactFileError or gives a model, never another exception."""
    raw = bytearray(files[2].read_bytes())
    n = int.from_bytes(raw[:8], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(8 + n, len(raw) - 5))
        raw[i] = data.draw(st.integers(0, 255))
    forged = with_fixed_crc(bytes(raw))
    path = files[2].parent / "damaged.cnn"
    path.write_bytes(forged)
    try:
        model = load(path)
    except CompactFileError:
        return
    model(torch.randn(2, 1, 8, 8))
