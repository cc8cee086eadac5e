"""Child process of the streaming memory measurements (``tests/stream/test_memory.py``,
``benchmarks/scale.py``): warm up on a small model (imports, kernels), then compress a
large one block by block and print, as one JSON line, the resident set before it
(``base``), the peak (``VmHWM``), the time, the model's and the file's bytes and the
per-block statistics.

Usage: python tests/stream/rss_child.py SMALL BIG OUT SAMPLES LENGTH VOCAB
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from compactnn.io.shards import Shards  # noqa: E402
from compactnn.stream import compress  # noqa: E402
from tests.stream.conftest import inputs  # noqa: E402

RECIPE = [{"method": "prune", "p": 90}, {"method": "cws", "k": 4}]


def vm(key: str) -> int:
    """A ``/proc/self/status`` size (``VmRSS:``, ``VmHWM:``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def main() -> None:
    small, big, out = sys.argv[1:4]
    n, length, vocab = (int(v) for v in sys.argv[4:7])
    compress(small, RECIPE, inputs(), out + ".warm", policy="csr")
    base = vm("VmRSS:")
    t = time.perf_counter()
    stats = compress(big, RECIPE, inputs(n=n, length=length, vocab=vocab), out, policy="csr")
    peak = max([vm("VmHWM:")] + [int(s.peak_mib * 2**20) for s in stats])  # per-part windows
    print(json.dumps({"base": base, "peak": peak, "seconds": time.perf_counter() - t,
                      "model": Shards(big).nbytes(), "file": os.path.getsize(out),
                      "blocks": [[s.name, s.seconds, s.peak_mib] for s in stats]}))


if __name__ == "__main__":
    main()
