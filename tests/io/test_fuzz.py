"""Hypothesis fuzzing of the loader: random byte edits, truncations and insertions, and
random edits of the description and tensors re-signed with valid checksums. The loader
either returns a model that runs, or raises ``CompactFileError``; nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactnn import zoo
from compactnn.io import CompactFileError, load, save
from compactnn.nn import to_compact
from tests.io.helpers import constrain_, reforge

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def bases() -> list[bytes]:
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=8), 0, sparsity=0.9)
    out = []
    with tempfile.TemporaryDirectory() as d:
        for policy, storage in (({"1": "csr", "3": "sham", "5": "cer"}, "raw"),
                                ("smallest", "archive")):
            p = Path(d) / "m.cnn"
            save(to_compact(model, policy, storage=storage), p, zoo=("lenet300",
                                                                     {"in_features": 8}))
            out.append(p.read_bytes())
    return out


def try_load(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.cnn"
        p.write_bytes(data)
        try:
            model = load(p, max_params=10**7)
        except CompactFileError:
            return
        model(torch.zeros(2, 1, 8))  # a file that loads must run


@SETTINGS
@given(which=st.integers(0, 1), data=st.data())
def test_byte_mutations(bases, which, data):
    raw = bytearray(bases[which])
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "insert":
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        i = data.draw(st.integers(0, len(raw) - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=32))
        raw[i:i + len(chunk)] = chunk
    try_load(bytes(raw))


JSON_LEAVES = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
               | st.lists(st.integers(-3, 2**33), max_size=3) | st.dictionaries(
                   st.text(max_size=4), st.integers(), max_size=2))


def paths(obj, prefix=()):
    """Every (path) to a value inside nested dicts and lists."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, prefix + (i,))


@SETTINGS
@given(which=st.integers(0, 1), data=st.data())
def test_description_mutations(bases, which, data):
    def edit(arrays, desc):
        body = {k: v for k, v in desc.items() if k not in ("tensors", "table_crc32")}
        candidates = [p for p in paths(body) if p]
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(candidates))
            parent = body
            for k in path[:-1]:
                parent = parent[k]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                try:
                    parent[path[-1]] = data.draw(JSON_LEAVES)
                except (IndexError, KeyError, TypeError):
                    pass
            candidates = [p for p in paths(body) if p]
            if not candidates:
                break
        desc.clear()
        desc.update(body)

    try_load(reforge(bases[which], edit))


@SETTINGS
@given(which=st.integers(0, 1), data=st.data())
def test_tensor_mutations(bases, which, data):
    def edit(arrays, desc):
        name = data.draw(st.sampled_from(sorted(arrays)))
        a = arrays[name]
        kind = data.draw(st.sampled_from(["bytes", "resize", "dtype"]))
        if kind == "bytes" and a.size:
            raw = bytearray(a.tobytes())
            for _ in range(data.draw(st.integers(1, 4))):
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
            arrays[name] = np.frombuffer(bytes(raw), a.dtype).reshape(a.shape).copy()
        elif kind == "resize":
            n = data.draw(st.integers(0, 2 * a.size + 2))
            arrays[name] = np.resize(a.reshape(-1), n) if a.size else np.zeros(n, a.dtype)
        else:
            dt = data.draw(st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64,
                                            np.int64, np.float32, np.float64]))
            arrays[name] = a.astype(dt) if a.dtype.kind != "f" or dt().dtype.kind == "f" \
                else np.nan_to_num(a).astype(dt)

    try_load(reforge(bases[which], edit))
