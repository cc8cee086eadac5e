"""Streaming compression against model size (issue 14): random-weight Llama models
written as safetensors shards, each compressed block by block (``compactnn.stream``) in
a child process; wall time, peak RSS (``VmHWM``) and the resident-set growth over the
child's baseline after a warm-up run, per model, and the per-block times.

Usage: python benchmarks/scale.py [--sizes 10,30] (millions of parameters; the config
for each size is a Llama of hidden width w, 4w MLP and w/64 blocks scaled to the size)
Writes benchmarks/results/scale.json and the ``scale`` section of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _docs import ROOT, render, save, table

CHILD = ROOT / "tests" / "stream" / "rss_child.py"


def config_for(millions: float) -> dict[str, int]:
    """A Llama shape of about ``millions`` parameters (4w MLP, 4096-token vocabulary)."""
    width = 256
    while True:
        per_block = 4 * width * width + 3 * width * 4 * width
        layers = max(2, round((millions * 1e6 - 2 * 4096 * width) / per_block))
        if layers <= 2 * width // 64 or width >= 4096:
            return {"hidden": width, "inter": 4 * width, "layers": layers}
        width *= 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,30", help="millions of parameters, comma-separated")
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.stream.conftest import make_sharded

    rows, per_block = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for m in [float(s) for s in a.sizes.split(",")]:
        c = config_for(m)
        with tempfile.TemporaryDirectory() as d:
            small = make_sharded("llama", Path(d) / "small")
            big = make_sharded("llama", Path(d) / "big", layers=c["layers"], hidden=c["hidden"],
                               inter=c["inter"], vocab=4096, shard="200MB")
            r = subprocess.run([sys.executable, str(CHILD), str(small), str(big),
                                str(Path(d) / "out.cnn"), "16", "32", "4096"], capture_output=True,
                               text=True, env=env, timeout=3600)
            if r.returncode:
                raise SystemExit(r.stderr[-2000:])
            res = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append([res["model"] / 4e6, c["layers"], c["hidden"], res["model"] / 2**20,
                     res["seconds"], res["peak"] / 2**20, (res["peak"] - res["base"]) / 2**20,
                     res["model"] / res["file"]])
        blocks = [b for b in res["blocks"] if b[0] not in ("head", "tail")]
        per_block.append([rows[-1][0], len(blocks), sum(b[1] for b in blocks) / len(blocks),
                          max(b[1] for b in blocks)])
        print(*rows[-1], flush=True)
    cols = [("params (M)", "{:.1f}", "---:"), ("blocks", "", "---:"), ("hidden", "", "---:"),
            ("float32 (MiB)", "{:.1f}", "---:"), ("seconds", "{:.1f}", "---:"),
            ("peak RSS (MiB)", "{:.1f}", "---:"), ("RSS growth (MiB)", "{:.1f}", "---:"),
            ("x smaller", "{:.1f}", "---:")]
    bcols = [("params (M)", "{:.1f}", "---:"), ("blocks", "", "---:"),
             ("mean s / block", "{:.2f}", "---:"), ("max s / block", "{:.2f}", "---:")]
    print(render(save("scale", [table(cols, rows), table(bcols, per_block, title="Per block")],
                      summary=None, text=(
        "Random Llama, prune 90 % + CWS k=4, policy csr, 16 samples x 32 tokens; RSS growth "
        "is the peak minus the resident set after a warm-up run in the same process."))))


if __name__ == "__main__":
    main()
