"""Child of ``benchmarks/scale.py --phases``: the peak resident-set growth of each step
a streamed block's layer goes through (magnitude prune 90 %, CWS k=4, bake, conversion
to csr), on one ROWS x COLS float32 layer (default 32000 x 768, the 100m model's LM
head); ``VmHWM`` reset through ``/proc/self/clear_refs`` before each step. Prints JSON.

Usage: python tests/stream/phase_child.py [ROWS COLS]
"""

import ctypes
import gc
import json
import sys
import time

import torch
from torch import nn

from compactnn.nn import to_compact
from compactnn.transforms import compress_
from compactnn.transforms.prune import bake_


def vm(key: str) -> float:
    """A ``/proc/self/status`` size in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def settle() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def main() -> None:
    rows, cols = (int(v) for v in sys.argv[1:3]) if len(sys.argv) > 2 else (32000, 768)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(cols, rows, bias=False))
    with torch.no_grad():
        model[0].weight.normal_(0, 0.02)
    to_compact(nn.Sequential(nn.Linear(8, 8)), "csr")  # imports, kernels
    settle()
    layer = rows * cols * 4 / 2**20
    steps = [("prune 90 %", lambda: compress_(model, [{"method": "prune", "p": 90}], bake=False)),
             ("cws k=4", lambda: compress_(model, [{"method": "cws", "k": 4}], bake=False)),
             ("bake", lambda: bake_(model)),
             ("to_compact csr", lambda: to_compact(model, "csr", inplace=True))]
    out = []
    for name, fn in steps:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before, t = vm("VmRSS:"), time.perf_counter()
        fn()
        seconds = time.perf_counter() - t
        out.append([name, (vm("VmHWM:") - before) / layer, seconds])
        settle()
    print(json.dumps({"rows": rows, "cols": cols, "layer_mib": layer, "steps": out}))


if __name__ == "__main__":
    main()
