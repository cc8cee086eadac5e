"""Huffman kernels (ham, sham) on 4096x4096, 90% pruned, 32 values, 1 thread.

Every method is timed once per round, round-robin, and the median and range over the
rounds are printed. Times are the calling thread's CPU time (``time.thread_time``; at
1 thread every method here runs on the calling thread), because on a shared machine
wall time mostly measures the other processes: decoding rate (``decode_symbols``, G
codes/s), batch-1 products against numpy dense, and batch-64 products (``W @ X`` and
``X @ Wᵀ``) against numpy dense (BLAS) and torch.sparse CSR.

Usage: python benchmarks/huffman.py [--rounds 5] [--sparsity 0.9] [--values 32]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import numpy as np
import torch
from _docs import save

from compactnn import formats
from compactnn.bench import threads
from compactnn.kernels import backend

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from formats import synthetic  # noqa: E402  (benchmarks/formats.py)

N = 4096
BATCH = 64


def cpu_time(fn, repeats: int = 7) -> float:
    """Median CPU seconds of the calling thread per ``fn()`` call (one warm-up)."""
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        samples.append(time.thread_time() - t0)
    return float(np.median(samples))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--values", type=int, default=32)
    args = ap.parse_args(argv)
    W = synthetic((N, N), args.sparsity, args.values)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(N, dtype=np.float32)
    X = rng.standard_normal((N, BATCH), dtype=np.float32)
    Xr = np.ascontiguousarray(X.T)
    Wt = torch.from_numpy(W).to_sparse_csr()
    ham, sham = (formats.get(f).from_dense(W) for f in ("ham", "sham"))
    calls = {
        "numpy dense mv": partial(np.matmul, W, x),
        "ham mv": partial(ham.matvec, x),
        "sham mv": partial(sham.matvec, x),
        "numpy dense W@X": partial(np.matmul, W, X),
        "torch csr W@X": lambda: Wt @ torch.from_numpy(X),
        "ham W@X": partial(ham.matmul, X),
        "sham W@X": partial(sham.matmul, X),
        "numpy dense X@W^T": partial(np.matmul, Xr, W.T),
        "ham X@W^T": partial(ham.rmatmul, Xr),
        "sham X@W^T": partial(sham.rmatmul, Xr),
    }
    codes = {}
    if backend.native() is not None:
        for name, M, count in (("ham", ham, N * N), ("sham", sham, sham.nnz)):
            kern = M._native()
            out = np.empty(count, np.uint8)
            calls[f"{name} decode_symbols"] = partial(kern.decode_symbols, 0, N, out)
            codes[f"{name} decode_symbols"] = count
    runs: dict[str, list[float]] = {k: [] for k in calls}
    with threads(1):
        for _ in range(args.rounds):
            for name, fn in calls.items():
                runs[name].append(cpu_time(fn))
    print(f"{backend.describe()}; {N}x{N}, {args.sparsity:.0%} pruned, {args.values} values, "
          f"nnz {sham.nnz}, 1 thread, CPU time, median [min-max] over {args.rounds} rounds\n")
    print("| method | ms | range | note |")
    print("|---|---|---|---|")
    med = {k: float(np.median(v)) for k, v in runs.items()}
    ref = {"mv": med["numpy dense mv"], "W@X": med["numpy dense W@X"],
           "X@W^T": med["numpy dense X@W^T"]}
    for name, v in runs.items():
        note = ""
        kind = name.split()[-1]
        if name in codes:
            note = f"{codes[name] / med[name] / 1e9:.2f} G codes/s"
        elif kind in ref and not name.startswith("numpy"):
            note = f"{ref[kind] / med[name]:.2f}x numpy dense"
            if kind != "mv" and not name.startswith("torch"):
                note += f", {med['torch csr W@X'] / med[name]:.2f}x torch csr"
        print(f"| {name} | {1e3 * med[name]:.3f} | {1e3 * min(v):.3f}-{1e3 * max(v):.3f} | "
              f"{note} |")
    save("huffman", [], summary=None, raw={"backend": backend.describe(), "cpu_s": runs,
                                           "codes": codes, "nnz": int(sham.nnz)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
