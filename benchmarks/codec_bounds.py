"""Where the bytes of a packed compactnn file go, per tensor, beside the i.i.d. entropy
of each part: positions (significance map), values (codebook indices), archive
header and codebook, plain float tensors (biases), description and container.

For each packed ``.cnn`` file given (``benchmarks/codecs.py`` writes
``codecs_<model>_packed.cnn`` into its ``--work``), every weight matrix is decoded and
its adaptive stream split by coding it twice with ``encode_matrix``: with its real
value indices (positions + values) and with every index 0 (``K = 1``: positions
alone); the value part is the difference. Beside them: the i.i.d. bounds, i.e. the
binary entropy of the matrix's density times its entries (positions) and the
empirical entropy of the value indices times their count (values); parameters not
counted, so an adaptive coder can beat them only by finding structure.

Usage: python benchmarks/codec_bounds.py FILE.cnn [FILE.cnn ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _docs import render, table
from _docs import save as save_results

from compactnn import load
from compactnn.coding.adaptive import encode_matrix
from compactnn.coding.archive import adaptive as archive_v3
from compactnn.io import inspect
from compactnn.nn import to_dense


def _h2(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else float(-p * np.log2(p) - (1 - p) * np.log2(1 - p))


def parts(W: np.ndarray) -> dict[str, float]:
    """Bytes of the adaptive stream's positions and values and their i.i.d. bounds."""
    W = W.reshape(W.shape[0], -1)
    sig = (W.view(np.uint32) != 0).astype(np.uint8)
    vals = W[sig.view(bool)]
    omega, vidx = np.unique(vals, return_inverse=True)
    period = archive_v3._period(sig)
    both = encode_matrix(sig, vidx.reshape(-1), omega.size, period).size
    pos = encode_matrix(sig, np.zeros(vals.size, np.int64), 1, period).size
    freq = np.bincount(vidx.reshape(-1)) / vals.size
    return {"positions": pos, "values": both - pos,
            "positions_iid": sig.size * _h2(vals.size / sig.size) / 8,
            "values_iid": float(-(freq * np.log2(freq)).sum() * vals.size / 8),
            "nnz": int(vals.size), "entries": int(sig.size), "K": int(omega.size)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args(argv)
    rows, raw = [], {}
    for path in args.files:
        info = inspect(path)
        dense = to_dense(load(path)).state_dict()
        name = path.stem
        raw[name] = {"file_bytes": info.file_bytes, "header_bytes": info.header_bytes,
                     "plain_bytes": info.state_bytes, "layers": {}}
        for li in info.layers:
            W = dense[f"{li.name}.weight"].numpy()
            p = parts(W)
            raw[name]["layers"][li.name] = {**p, "stored": li.stored_bytes, "coder": li.coder}
            rows.append([name, f"{li.name}.weight {li.coder}", li.stored_bytes, p["positions"],
                         p["values"], li.stored_bytes - p["positions"] - p["values"],
                         p["positions_iid"], p["values_iid"]])
        rows.append([name, "plain tensors (biases)", info.state_bytes, None, None, None, None,
                     None])
        rows.append([name, "description and container", info.header_bytes, None, None, None,
                     None, None])
        rows.append([name, "file", info.file_bytes, None, None, None, None, None])
    results = save_results(
        "codec_bounds", [table([("file", "", ":---"), ("part", "", ":---"),
                                ("stored bytes", "{}", "---:"), ("positions", "{}", "---:"),
                                ("values", "{}", "---:"),
                                ("archive header + codebook", "{}", "---:"),
                                ("positions, i.i.d. bound", "{:.0f}", "---:"),
                                ("values, i.i.d. bound", "{:.0f}", "---:")], rows)],
        summary=None, page="docs/results/codecs.md", raw=raw)
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
