"""A bounded fuzz run (about 60 s): seeded mutants of valid files, half of them with
recomputed checksums (so the semantic checks, not the CRCs, must catch them). Every
mutant either loads and runs a forward pass, or raises ``CompactFileError``; no mutant
may take more than a few seconds (reported, the slowest named on failure)."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from compactnn.io import CompactFileError, inspect, load
from tests.io.corpus import _base
from tests.io.helpers import reforge

BUDGET_S = 60.0
SLOW_S = 5.0  # one mutant (load + forward) must stay far below this


def _byte_mutant(rng: random.Random, raw: bytes) -> bytes:
    b = bytearray(raw)
    kind = rng.choice(["flip", "truncate", "insert", "overwrite"])
    if kind == "flip":
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= rng.randint(1, 255)
    elif kind == "truncate":
        b = b[:rng.randrange(len(b))]
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 16))
    else:
        i = rng.randrange(len(b))
        chunk = rng.randbytes(rng.randint(1, 32))
        b[i:i + len(chunk)] = chunk
    return bytes(b)


_DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int64, np.float32, np.float64]
_LEAVES = [None, True, 0, 1, -1, 7, 2**31, 2**63, 1e300, -0.5, "x", [], {}, [0, 0], [1, 2**40]]


def _semantic_mutant(rng: random.Random, raw: bytes) -> bytes:
    def edit(arrays, desc):
        if rng.random() < 0.5:
            name = rng.choice(sorted(arrays))
            a = arrays[name]
            kind = rng.choice(["bytes", "resize", "dtype"])
            if kind == "bytes" and a.size:
                flat = bytearray(a.tobytes())
                for _ in range(rng.randint(1, 4)):
                    flat[rng.randrange(len(flat))] = rng.randrange(256)
                arrays[name] = np.frombuffer(bytes(flat), a.dtype).reshape(a.shape).copy()
            elif kind == "resize":
                n = rng.randint(0, 2 * a.size + 2)
                arrays[name] = np.resize(a.reshape(-1), n) if a.size else np.zeros(n, a.dtype)
            else:
                dt = rng.choice(_DTYPES)
                src = np.nan_to_num(a) if a.dtype.kind == "f" else a
                arrays[name] = src.astype(dt)
        else:
            layer = desc["layers"][rng.choice(sorted(desc["layers"]))]
            key = rng.choice(sorted(layer))
            if rng.random() < 0.3:
                layer.pop(key)
            elif isinstance(layer[key], list) and layer[key] and rng.random() < 0.5:
                layer[key][rng.randrange(len(layer[key]))] = rng.choice(_LEAVES)
            else:
                layer[key] = rng.choice(_LEAVES)

    return reforge(raw, edit)


@pytest.fixture(scope="module")
def bases() -> list[tuple[bytes, tuple[int, ...]]]:
    kw = {"in_features": 16}
    return [(_base({"1": "csr", "3": "sham", "5": "cer"}), (2, 16)),
            (_base({"1": "cser", "3": "ham", "5": "index_map"}), (2, 16)),
            (_base("smallest", "archive"), (2, 16)),
            (_base({"1": "permseq", "3": "blockdiag", "5": "dense"}, kwargs=kw), (2, 16))]


def test_bounded_fuzz(bases):
    rng = random.Random(20240616)
    counts = {"loaded": 0, "rejected": 0, "semantic": 0, "bytes": 0}
    slowest = (0.0, "")
    t_end = time.perf_counter() + BUDGET_S
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.cnn"
        i = 0
        while time.perf_counter() < t_end:
            raw, shape = bases[i % len(bases)]
            semantic = i % 2 == 1
            data = _semantic_mutant(rng, raw) if semantic else _byte_mutant(rng, raw)
            counts["semantic" if semantic else "bytes"] += 1
            path.write_bytes(data)
            t0 = time.perf_counter()
            try:
                inspect(path)
                model = load(path)
                with torch.no_grad():
                    out = model(torch.zeros(shape))
                assert out.shape[0] == shape[0]
                counts["loaded"] += 1
            except CompactFileError as exc:
                assert "\n" not in str(exc)
                counts["rejected"] += 1
            except Exception as exc:
                (Path(d).parent / "fuzz-failure.cnn").write_bytes(data)
                raise AssertionError(f"mutant {i} ({'semantic' if semantic else 'bytes'}) "
                                     f"raised {type(exc).__name__}: {exc}") from exc
            dt = time.perf_counter() - t0
            if dt > slowest[0]:
                slowest = (dt, f"mutant {i}")
            i += 1
    print(f"\nfuzz: {i} mutants in {BUDGET_S:.0f} s: {counts}; slowest {slowest[0]:.2f} s "
          f"({slowest[1]})")
    assert counts["semantic"] and counts["bytes"]
    assert slowest[0] < SLOW_S, slowest
