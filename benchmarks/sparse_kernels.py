"""The sparse formats' kernels (csr, cer, cser) on every kernel path against numpy
dense (BLAS) and torch.sparse CSR, side by side in one process, on 1 thread.

Matrix: 4096x4096 Gaussian, magnitude-pruned to 90%, non-zeros shared among 32
values (``formats.synthetic``). Products: ``mv`` = ``W @ x``; ``mm`` = ``W @ X`` and
``rmm`` = ``X @ Wᵀ`` (what ``CompactLinear`` runs) for a batch of 64. Every method is
timed once per round, round-robin, and the median and range over rounds are
reported (the machine is shared; a single pass drifts with the load). Every result
is checked against a float64 reference first.

Usage: python benchmarks/sparse_kernels.py [--rounds 5] [--paths avx512,avx2,portable,numba]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # see benchmarks/formats.py

import argparse
import contextlib
import sys
import warnings
from functools import partial

import numpy as np
import torch
from _docs import save

from compactnn import formats
from compactnn.bench import threads, time_call
from compactnn.kernels import backend

sys.path.insert(0, os.path.dirname(__file__))
from formats import synthetic  # noqa: E402

FIDS = ("csr", "cer", "cser")
BATCH = 64


def methods(W: np.ndarray, paths: list[str]) -> list[tuple[str, str | None, dict]]:
    """``(name, kernel path or None, {kind: fn(arg)})`` for the baselines and every
    format on every path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: sparse CSR support is in beta
        T = torch.from_numpy(W).to_sparse_csr()
    out = [
        ("numpy dense", None, {"mv": lambda x: W @ x, "mm": lambda X: W @ X,
                               "rmm": lambda Xr: Xr @ W.T}),
        ("torch csr", None, {"mm": lambda X: (T @ torch.from_numpy(X)).numpy(),
                             "rmm": lambda Xr: (T @ torch.from_numpy(Xr).T).T.numpy()}),
    ]
    for fid in FIDS:
        M = formats.get(fid).from_dense(W)
        for p in paths:
            out.append((fid, p, {"mv": M.matvec, "mm": M.matmul, "rmm": M.rmatmul}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--paths", default=",".join(
        [p for p in backend.BACKENDS if p == "numba" or backend._ext is not None
         and backend.BACKENDS.index(p) <= backend._ext.cpu_level()]))
    args = ap.parse_args(argv)
    paths = args.paths.split(",")
    W = synthetic((4096, 4096), 0.9, 32)
    rng = np.random.default_rng(1)
    args_of = {"mv": rng.standard_normal(4096, dtype=np.float32),
               "mm": rng.standard_normal((4096, BATCH), dtype=np.float32)}
    args_of["rmm"] = np.ascontiguousarray(args_of["mm"].T)
    W64 = W.astype(np.float64)
    refs = {"mv": W64 @ args_of["mv"], "mm": W64 @ args_of["mm"], "rmm": args_of["rmm"] @ W64.T}
    ms = methods(W, paths)
    times: dict[tuple[str, str, str], list[float]] = {}
    backend.set_num_threads(1)
    with threads(1):
        for _ in range(args.rounds):
            for name, path, fns in ms:
                with backend.use(path) if path else contextlib.nullcontext():
                    for kind, fn in fns.items():
                        got = fn(args_of[kind])
                        if not np.allclose(got, refs[kind], rtol=1e-4, atol=1e-3):
                            raise RuntimeError(f"{name} {path} {kind}: wrong result")
                        t = time_call(partial(fn, args_of[kind]), repeats=9, warmup=1,
                                      max_total_s=1.0).median
                        times.setdefault((name, path or "-", kind), []).append(t * 1e3)
    print(f"### 4096x4096, 90% pruned, 32 values, 1 thread: ms, median [min-max] of "
          f"{args.rounds} rounds (mm/rmm: batch {BATCH})\n")
    print("| method | path | mv | mm | rmm |")
    print("|---|---|---|---|---|")
    med = {k: float(np.median(v)) for k, v in times.items()}
    for name, path, _ in ms:
        cells = []
        for kind in ("mv", "mm", "rmm"):
            v = times.get((name, path or "-", kind))
            cells.append(f"{np.median(v):.3f} [{min(v):.3f}-{max(v):.3f}]" if v else "")
        print(f"| {name} | {path or '-'} | " + " | ".join(cells) + " |")
    low = {k: min(v) for k, v in times.items()}
    print("\nRatios of medians, then (in brackets) of minima, which load on the machine "
          "distorts less:\n")
    print("| ratio | " + " | ".join(f"{f} {p}" for f in FIDS for p in paths) + " |")
    print("|---|" + "---|" * (len(FIDS) * len(paths)))
    for label, kind, base in (("dense mv / mv (>= 8)", "mv", ("numpy dense", "-")),
                              ("dense mm / mm (>= 1)", "mm", ("numpy dense", "-")),
                              ("torch mm / mm (>= 2)", "mm", ("torch csr", "-")),
                              ("dense rmm / rmm (>= 1)", "rmm", ("numpy dense", "-")),
                              ("torch rmm / rmm (>= 2)", "rmm", ("torch csr", "-"))):
        row = [f"{med[(*base, kind)] / med[(f, p, kind)]:.2f} "
               f"[{low[(*base, kind)] / low[(f, p, kind)]:.2f}]" for f in FIDS for p in paths]
        print(f"| {label} | " + " | ".join(row) + " |")
    save("sparse_kernels", [], summary=None,
         raw={"ms": {" / ".join(k): v for k, v in times.items()}, "rounds": args.rounds})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
