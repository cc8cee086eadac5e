"""Streaming compression of a model larger than its own peak memory: a child process
compresses a 16-block Llama (about 150 MB of float32 weights in 40 MB shards) and its
resident set grows by less than three quarters of the model's size over the baseline
after a warm-up run (imports, kernels), measured by the kernel (``VmHWM``). Measured:
78 MB for the 145 MB model (one 8.8 MB block plus the working set of its largest
layers' pruning, k-means and conversion); the in-memory pipeline needs the whole model
plus that working set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import make_sharded

ROOT = Path(__file__).resolve().parents[2]

CHILD = Path(__file__).with_name("rss_child.py")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_peak_memory_below_the_model(tmp_path):
    pytest.importorskip("transformers")
    small = make_sharded("llama", tmp_path / "small")
    big = make_sharded("llama", tmp_path / "big", layers=16, hidden=384, inter=1536,
                       vocab=1024, shard="40MB")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, str(CHILD), str(small), str(big),
                        str(tmp_path / "out.cnn"), "16", "16", "1024"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["model"] > 140e6
    assert m["peak"] - m["base"] < 0.75 * m["model"], m
    assert (tmp_path / "out.cnn").stat().st_size < m["model"] / 4
