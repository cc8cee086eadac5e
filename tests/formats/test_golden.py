"""Committed golden buffers: the on-disk layout of every format is stable."""

from __future__ import annotations

import numpy as np
import pytest

from compactnn import formats

from .golden import DIR, golden_matrix, read


@pytest.mark.parametrize("fid", formats.registered())
def test_golden_buffers(fid):
    path = DIR / f"{fid}.safetensors"
    assert path.exists(), f"missing {path}; run python -m tests.formats.golden"
    dense, bufs, attrs = read(fid)
    assert dense.tobytes() == golden_matrix().tobytes()
    F = formats.get(fid)
    new_bufs, new_attrs = F.from_dense(dense).to_buffers()
    assert new_attrs == attrs
    assert set(new_bufs) == set(bufs)
    for k, v in bufs.items():
        assert new_bufs[k].dtype == v.dtype and new_bufs[k].shape == v.shape, k
        assert new_bufs[k].tobytes() == v.tobytes(), k
    decoded = F.from_buffers(bufs, attrs).to_dense()
    assert np.array_equal(decoded.view(np.uint32), dense.view(np.uint32))
