"""Batched products that decode a tile of rows once and multiply it with torch's
GEMM (MKL/oneDNN, on the OpenMP pool the native kernels share).

Formats whose native kernel decodes rows (``decode_rows(r0, nr, out)`` writes rows
``r0 .. r0 + nr - 1`` as float32 into ``out`` of shape ``(nr, n)``) use these for
batches too large for their fused kernels: the codes are decoded once per product,
not once per column, and only one tile (about :data:`TILE_FLOATS` floats, or the
whole matrix when it is small) is ever dense. torch is imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["TILE_FLOATS", "rmatmul_tiles", "matmul_tiles", "numba_tiles"]

TILE_FLOATS = 1 << 20
"""Floats of the scratch tile (4 MB): one tile covers MiniLM-size matrices whole, so a
product is one decode and one GEMM call."""

Decode = Callable[[int, int, np.ndarray], None]


def _tile_rows(m: int, n: int) -> int:
    return max(1, min(m, TILE_FLOATS // max(n, 1)))


def rmatmul_tiles(decode_rows: Decode, shape: tuple[int, int], X: np.ndarray,
                  Y: np.ndarray) -> None:
    """``Y (b, m) = X (b, n) @ Wᵀ`` tile by tile (X, Y C-contiguous float32)."""
    import torch

    m, n = shape
    t = _tile_rows(m, n)
    scratch = np.empty((t, n), np.float32)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    for r0 in range(0, m, t):
        nr = min(t, m - r0)
        tile = scratch[:nr]
        decode_rows(r0, nr, tile)
        if nr == m:
            torch.mm(Xt, torch.from_numpy(tile).T, out=Yt)
        else:
            Yt[:, r0:r0 + nr] = torch.mm(Xt, torch.from_numpy(tile).T)


def matmul_tiles(decode_rows: Decode, shape: tuple[int, int], X: np.ndarray,
                 Y: np.ndarray) -> None:
    """``Y (m, b) = W @ X (n, b)`` tile by tile: each tile fills a block of rows."""
    import torch

    m, n = shape
    t = _tile_rows(m, n)
    scratch = np.empty((t, n), np.float32)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    for r0 in range(0, m, t):
        nr = min(t, m - r0)
        tile = scratch[:nr]
        decode_rows(r0, nr, tile)
        torch.mm(torch.from_numpy(tile), Xt, out=Yt[r0:r0 + nr])


def numba_tiles(decode_rows: Decode, shape: tuple[int, int], rows: int):
    """Yield ``(first row, decoded rows)`` tile by tile (``rows`` rows a tile, one
    scratch buffer) for the numba paths, whose callers multiply each tile with BLAS.

    One thread pool at a time: tiles decode on one numba thread while BLAS runs the
    tile products on all of its threads (two pools taking turns every tile, each
    spinning while the other works, made 2-thread products 15x slower)."""
    import numba

    m, n = shape
    scratch = np.empty((rows, n), np.float32)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for r0 in range(0, m, rows):
            tile = scratch[:min(rows, m - r0)]
            decode_rows(r0, tile.shape[0], tile)
            yield r0, tile
    finally:
        numba.set_num_threads(threads)
