"""Golden fixtures: one committed file per format with a fixed matrix and its buffers.

A change to a format's byte layout fails ``test_golden.py``; regenerate on purpose
(and bump the format's ``version``) with ``python -m tests.formats.golden``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from compactnn import formats

DIR = Path(__file__).parent / "golden"


def golden_matrix() -> np.ndarray:
    """A fixed 13x37 pruned, 6-value matrix with a -0.0 and a non-zero-fill row."""
    vals = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.25, -0.5, 0.75, -1.0, 1.5, -0.0], np.float32)
    idx = (np.arange(13 * 37, dtype=np.int64) * 7919 + 17) % 101 % vals.size
    W = vals[idx].reshape(13, 37).copy()
    W[4] = 0.25
    return W


def write(fid: str) -> Path:
    M = formats.get(fid).from_dense(golden_matrix())
    bufs, attrs = M.to_buffers()
    tensors = {"dense": golden_matrix(), **{f"buf.{k}": v for k, v in bufs.items()}}
    DIR.mkdir(exist_ok=True)
    path = DIR / f"{fid}.safetensors"
    save_file(tensors, str(path), metadata={"attrs": json.dumps(attrs, sort_keys=True)})
    return path


def read(fid: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    path = DIR / f"{fid}.safetensors"
    meta = json.loads(__import__("safetensors").safe_open(str(path), "np").metadata()["attrs"])
    t = load_file(str(path))
    return t["dense"], {k[4:]: v for k, v in t.items() if k.startswith("buf.")}, meta


if __name__ == "__main__":
    import sys

    for fid in sys.argv[1:] or formats.registered():  # one id: regenerate that file only
        print(write(fid))
