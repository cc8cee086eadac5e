"""Size and speed of the two archive coders (``ans``, ``adaptive``) on the constrained
LeNet-300-100 of ``benchmarks/end_to_end.py`` (its checkpoint in ``--work``) and on a
MiniLM-size 1536x384 matrix (16 levels, half zeros, i.i.d.): bytes, encode and decode
time (best of ``--repeats``, one thread).

Usage: python benchmarks/archive_coders.py [--work /tmp/compactnn-e2e] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _docs import render, save, table

from compactnn.bench import threads
from compactnn.coding import archive
from compactnn.zoo.checkpoint import load_checkpoint


def best(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/compactnn-e2e")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    model, *_ = load_checkpoint(Path(args.work) / "lenet300_compressed.safetensors")
    mats = {f"lenet300 {k} {v.shape[0]}x{v.shape[1]}": v.detach().numpy()
            for k, v in model.state_dict().items() if k.endswith("weight")}
    rng = np.random.default_rng(0)
    levels = np.linspace(-0.1, 0.1, 16).astype(np.float32)
    mats["1536x384 k=16, 50% zeros (i.i.d.)"] = (levels[rng.integers(0, 16, (1536, 384))]
                                        * (rng.random((1536, 384)) < 0.5)).astype(np.float32)
    for W in mats.values():  # compile the kernels outside the timings
        archive.decode(archive.encode(W[:4, :8].copy(), "adaptive").buffer, (4, 8))
    rows = []
    with threads(1):
        for name, W in mats.items():
            for coder in ("ans", "adaptive"):
                A = archive.encode(W, coder)
                enc = best(lambda W=W, coder=coder: archive.encode(W, coder), args.repeats)
                dec = best(lambda A=A, W=W: archive.decode(A.buffer, W.shape), args.repeats)
                rows.append([name, coder, A.nbytes, 1e3 * enc, 1e3 * dec])
    print(render(save("archive_coders", [table(
        [("matrix", "", ":---"), ("coder", "", ":---"), ("bytes", "{}", "---:"),
         ("encode", "{:.1f} ms", "---:"), ("decode", "{:.1f} ms", "---:")], rows)])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
