"""``compactnn.train.fit`` on 2 gloo ranks (started as ``torchrun`` starts them) against
one process: a pruned and weight-shared LeNet-300-100 on digits, uneven slices and a
rank with an empty slice; the ranks end equal, the masks and assignments are kept, and
the weights / codebooks are the one-process ones up to the all-reduce's summation order
(tolerance below, measured: docs/architecture/streaming.md, "Fine-tuning under DDP")."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from compactnn import zoo
from compactnn.train import ddp, fit
from compactnn.transforms import compress_
from tests.cli.test_torchrun import _exit
from tests.stream.test_distributed import _env, _free_port

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

TOL = 1e-6  # max |two ranks - one process| of a weight or codebook value (measured: 3e-8)


def _constrained():
    torch.manual_seed(0)
    model = zoo.build("lenet300", in_features=64)
    compress_(model, [{"method": "prune", "p": 80}, {"method": "cws", "k": 8}], bake=False)
    x, y = zoo.load_dataset("digits")[0].tensors
    return model, torch.utils.data.TensorDataset(x[:1345], y[:1345])


def _fits(model, data) -> list:
    # batch 64: the last batch has 1 sample (rank 0's slice is empty); batch 50: 45 (22 / 23)
    return (fit(model, data, epochs=1, lr=1e-3, batch_size=64, seed=3, progress=False)
            + fit(model, data, epochs=1, lr=1e-3, batch_size=50, seed=4, progress=False,
                  lr_schedule="constant"))


def _rank(rank: int, world: int, port: int, out: str) -> None:
    _env(rank, world, port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, data = _constrained()
        hist = _fits(model, data)
        torch.save({"hist": hist, "state": model.state_dict()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()
    _exit(0)  # tests/cli/test_torchrun.py::_exit


def test_share_slices_a_batch():
    x, y = torch.arange(5), torch.arange(5) * 10
    parts = [ddp.share(x, y, r, 2) for r in range(2)]
    assert [p[0].tolist() for p in parts] == [[0, 1], [2, 3, 4]]
    assert [p[2] for p in parts] == [0.8, 1.2]
    assert ddp.share(x[:1], y[:1], 0, 2)[2] == 0.0  # empty slice: one sample, weight 0
    assert ddp.ranks() == (0, 1)


def test_two_ranks_fit_like_one_process(tmp_path):
    out = str(tmp_path / "state")
    mp.spawn(_rank, args=(2, _free_port(), out), nprocs=2, join=True)
    two = [torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks
    try:
        model, data = _constrained()
        frozen = {k: v.clone() for k, v in model.state_dict().items()}
        hist = _fits(model, data)
    finally:
        torch.set_num_threads(threads)
    one = model.state_dict()
    assert two[0]["state"].keys() == one.keys()
    for k in one:  # the ranks are equal bit for bit
        assert torch.equal(two[0]["state"][k], two[1]["state"][k]), k
    worst = 0.0
    for k, v in one.items():
        got = two[0]["state"][k]
        if k.endswith(("mask", "assign")):
            assert torch.equal(got, v) and torch.equal(v, frozen[k]), k
        elif v.is_floating_point() and v.numel():
            assert not torch.equal(v, frozen[k]), k  # it trained
            worst = max(worst, (got - v).abs().max().item())
    print(f"max |two ranks - one process| = {worst:.3g}")
    assert worst <= TOL
    for a, b in zip(two[0]["hist"], hist, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
