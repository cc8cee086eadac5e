"""Importing the package root or ``compactnn.formats`` loads no heavy dependency
(numba compiles on a kernel's first call, scipy loads in the one function using it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "tqdm", "numba", "llvmlite", "scipy", "transformers", "matplotlib")


def _loaded(statement: str, **env: str) -> list[str]:
    code = (f"import json, sys\n{statement}\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(SRC), **env}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("statement", ["import compactnn", "import compactnn.formats",
                                       "import compactnn.coding",
                                       "import compactnn.kernels.huffman"])
def test_import_loads_no_heavy_dependency(statement: str) -> None:
    assert _loaded(statement) == []


def test_numba_loads_on_a_kernels_first_call() -> None:
    assert _loaded("import compactnn.formats, numpy as np\n"
                   "compactnn.formats.get('csr').from_dense(np.eye(3, dtype=np.float32))"
                   ".matvec(np.ones(3, np.float32))",
                   COMPACTNN_KERNELS="numba")[:2] == ["llvmlite", "numba"]
