"""Per-layer product times in MiniLM's regime: unpruned matrices with a few shared values
times many token columns (batch 32 x ~13 tokens), on 1 thread.

For each MiniLM Linear shape and column count: dense float32 ``np.matmul``, the
``index_map`` product (tiled: a tile of rows decoded into a scratch buffer, then BLAS)
and ``csr``, all on the same matrix (``--values`` distinct values drawn from a normal
distribution, uniform random assignment), in both layouts: ``matmul`` (``W @ X``,
inputs as columns) and ``rmatmul`` (``X @ Wᵀ``, inputs as rows, what ``CompactLinear``
runs; csr transposes around its ``matmul`` there). Every product is checked against the
dense result before it is timed. Prints a markdown table (median of ``--repeats`` runs).

Usage: python benchmarks/minilm_kernels.py [--values 12] [--columns 16,400] [--repeats 9]
"""

from __future__ import annotations

import argparse

import numpy as np
from _docs import save

from compactnn import formats
from compactnn.bench import threads, time_call

SHAPES = ((384, 384), (1536, 384), (384, 1536))


def median_time(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up (one call
    per sample)."""
    return time_call(fn, repeats, warmup=1, min_sample_s=0.0).median


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--values", type=int, default=12)
    ap.add_argument("--columns", default="16,400")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    raw = []
    print("| shape | columns | dense W @ X | index_map matmul | csr matmul | index_map / dense "
          "| dense X @ Wᵀ | index_map rmatmul | csr rmatmul | index_map / dense |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with threads(1):
        for m, n in SHAPES:
            W = rng.standard_normal(args.values).astype(np.float32)[
                rng.integers(0, args.values, (m, n))]
            mats = {f: formats.get(f).from_dense(W) for f in ("index_map", "csr")}
            for k in (int(c) for c in args.columns.split(",")):
                X = rng.standard_normal((n, k)).astype(np.float32)
                ref = W @ X
                for M in mats.values():
                    np.testing.assert_allclose(M.matmul(X), ref, rtol=1e-3, atol=1e-3)
                Y = np.empty((m, k), np.float32)
                dense = median_time(lambda W=W, X=X, Y=Y: np.matmul(W, X, out=Y),
                                    args.repeats)
                t = {f: median_time(lambda M=M, X=X: M.matmul(X), args.repeats)
                     for f, M in mats.items()}
                R = np.ascontiguousarray(X.T)  # the same inputs as rows
                for M in mats.values():
                    np.testing.assert_allclose(M.rmatmul(R), ref.T, rtol=1e-3, atol=1e-3)
                Yr = np.empty((k, m), np.float32)
                dense_r = median_time(lambda W=W, R=R, Y=Yr: np.matmul(R, W.T, out=Y),
                                      args.repeats)
                tr = {f: median_time(lambda M=M, R=R: M.rmatmul(R), args.repeats)
                      for f, M in mats.items()}
                print(f"| {m}x{n} | {k} | {dense * 1e3:.2f} ms | {t['index_map'] * 1e3:.2f} ms "
                      f"| {t['csr'] * 1e3:.2f} ms | {t['index_map'] / dense:.2f}x "
                      f"| {dense_r * 1e3:.2f} ms | {tr['index_map'] * 1e3:.2f} ms "
                      f"| {tr['csr'] * 1e3:.2f} ms | {tr['index_map'] / dense_r:.2f}x |",
                      flush=True)
                raw.append({"shape": [m, n], "columns": k, "dense_s": dense, "matmul_s": t,
                            "dense_rmatmul_s": dense_r, "rmatmul_s": tr})
    save("minilm_kernels", [], summary=None, raw=raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
