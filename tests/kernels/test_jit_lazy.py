"""``kernels._jit``: placeholders compile on first use and compiled code sees numba
objects only (helpers, ``prange`` and intrinsics named by a kernel are resolved in
place first)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

from compactnn.kernels import _jit
from compactnn.kernels.huffman import _clz64_py


def _module(tmp_path: Path, source: str) -> types.ModuleType:
    """A module importing ``_jit`` from a real file (numba caches by file)."""
    path = tmp_path / "jit_probe.py"
    path.write_text("import numpy as np\n"
                    "from compactnn.kernels._jit import inline, jit, prange\n" + source)
    spec = importlib.util.spec_from_file_location("compactnn_test_jit_probe", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_kernel_and_its_helpers_resolve_on_first_call(tmp_path: Path) -> None:
    mod = _module(tmp_path,
        "@inline\n"
        "def twice(v):\n    return 2 * v\n"
        "@jit(parallel=True)\n"
        "def total(x):\n"
        "    s = np.zeros(x.shape[0])\n"
        "    for i in prange(x.shape[0]):\n        s[i] = twice(x[i])\n"
        "    return s.sum()\n")
    try:
        assert isinstance(mod.total, _jit.Deferred) and isinstance(mod.twice, _jit.Deferred)
        assert "not yet compiled" in repr(mod.total)
        kernel = mod.total
        assert kernel(np.arange(5.0)) == 20.0
        assert not isinstance(mod.total, _jit.Deferred)  # the module now holds the dispatcher
        assert not isinstance(mod.twice, _jit.Deferred)
        assert mod.prange is not _jit.prange  # numba.prange, so the loop is parallel
        assert kernel(np.arange(3.0)) == 6.0 and kernel.py_func(np.arange(3.0)) == 6.0
    finally:
        del sys.modules["compactnn_test_jit_probe"]


def test_intrinsic_matches_its_python_twin(tmp_path: Path) -> None:
    mod = _module(tmp_path, "from compactnn.kernels import huffman\n"
                            "@jit\ndef probe(v):\n    return huffman.clz64(v)\n")
    try:
        values = [mod.probe(np.uint64(v)) for v in (1, 2**31, 2**63, 12345)]
    finally:
        del sys.modules["compactnn_test_jit_probe"]
    for v, got in zip((1, 2**31, 2**63, 12345), values, strict=True):
        assert got == _clz64_py(np.uint64(v))
