"""Build of the optional native kernel extension (everything else is in pyproject.toml).

The extension is C11 with SIMD intrinsics behind function-level target attributes, so
one build serves AVX-512, AVX2 and portable CPUs (chosen at run time). It is optional:
without a C compiler the package installs and runs on its numba kernels
(``compactnn.kernels.backend()`` says which path is active).
"""

import sys

from setuptools import Extension, setup

_SRC = "src/compactnn/kernels/csrc/"
_unix = sys.platform != "win32"

setup(
    ext_modules=[
        Extension(
            "compactnn.kernels._native",
            sources=[_SRC + f for f in ("dispatch.c", "module.c", "lut.c", "py_lut.c",
                                        "huffman.c", "py_huffman.c", "sparse.c", "py_sparse.c",
                                        "sliced.c", "htiles.c", "blockdiag.c", "py_blockdiag.c", "py_chain.c",
                                        "lfloat.c", "py_lfloat.c")],
            depends=[_SRC + f for f in ("cnn_kernels.h", "cnn_internal.h", "pybind.h",
                                        "sparse_tmpl.h")],
            extra_compile_args=["-O3", "-std=c11", "-fopenmp", "-fno-math-errno",
                                "-Wall", "-Wextra", "-Wno-unused-parameter"] if _unix else [],
            extra_link_args=["-fopenmp"] if _unix else [],
            optional=True,
        )
    ]
)
