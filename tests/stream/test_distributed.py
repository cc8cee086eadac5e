"""Two gloo processes on CPU measure the same calibration moments, bit for bit, as one
process (``compactnn.stream.distributed``)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from compactnn.stream.distributed import linear_input_moments
from compactnn.transforms.calibrate import input_moments


def _model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 8))
    return model, torch.randn(300, 5, 12)  # 5 batches of up to 64 samples


def _rank(rank: int, world: int, rdv: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    try:
        model, x = _model()
        h = linear_input_moments(model, model[2], x)
        if rank == 0:
            torch.save(h, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="needs torch.distributed with gloo")
def test_two_gloo_processes_equal_one(tmp_path):
    out = tmp_path / "h.pt"
    mp.spawn(_rank, args=(2, str(tmp_path / "rdv"), str(out)), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    model, x = _model()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks
    try:
        one = linear_input_moments(model, model[2], x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(two, one)
    torch.testing.assert_close(one, input_moments(model, model[2], x), rtol=1e-12, atol=1e-12)
