"""Distributed runs on CPU (gloo) give the one-process results bit for bit:
``transforms.parallel`` (bin-packed tasks, batch sums in batch order) over 3 ranks, and
``compactnn compress --stream`` over 2 ranks started as ``torchrun`` starts them
(``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` in the environment, ``env://``)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from compactnn.cli import main
from compactnn.transforms import parallel
from compactnn.transforms.calibrate import input_moments

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

# data-aware SparseGPT, then GPTQ sharing, on 150 samples (3 calibration batches)
RECIPE = ("- {method: prune, p: 50, criterion: sparsegpt, calibrate: 150}\n"
          "- {method: cws, k: 8, calibrate: 150}\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 8))
    return model, torch.randn(150, 5, 12)  # 3 batches of up to 64 samples


def _tasks() -> list:
    return [(c, lambda c=c: torch.full((c,), float(c))) for c in (1, 5, 3, 3, 2)]


def _parallel_rank(rank: int, world: int, port: int, out: str) -> None:
    _env(rank, world, port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        with parallel.using(parallel.Parallel()):
            model, x = _model()
            got = {"moments": input_moments(model, model[2], x),
                   "map": parallel.current().map(_tasks()),
                   "one": parallel.current().sum_batches(  # rank 2 has no batch
                       2, torch.empty(3, dtype=torch.float64),
                       lambda b, out: out.fill_(0.1 * (b + 1)))}
        if rank == 0:
            torch.save(got, out)
    finally:
        dist.destroy_process_group()


def test_three_ranks_equal_one_process(tmp_path):
    out = tmp_path / "r.pt"
    mp.spawn(_parallel_rank, args=(3, _free_port(), str(out)), nprocs=3, join=True)
    got = torch.load(out, weights_only=True)
    model, x = _model()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks
    try:
        one = input_moments(model, model[2], x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got["moments"], one)
    assert [t.tolist() for t in got["map"]] == [fn().tolist() for _, fn in _tasks()]
    assert got["one"].tolist() == [0.1 + 0.2] * 3
    assert parallel.bin_pack([1, 5, 3, 3, 2], 3) == [2, 0, 1, 2, 1]


def _argv(folder, data, recipe, out) -> list[str]:
    return [str(a) for a in ("compress", folder, "--recipe", recipe, "--data", data,
                             "--stream", "--device", "cpu", "-o", out)]


def _cli_rank(rank: int, world: int, port: int, argv: list[str], codes: str) -> None:
    _env(rank, world, port)
    code = main(argv)
    with open(f"{codes}.{rank}", "w") as f:
        f.write(str(code))


def test_torchrun_stream_equals_one_process(tmp_path, capsys):
    pytest.importorskip("transformers")
    from tests.anymodel.conftest import _lines, make_model_dir

    folder, data = make_model_dir("llama", tmp_path / "m")
    data.write_text("\n".join(_lines(150, 0)) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    two = tmp_path / "two.cnn"
    mp.spawn(_cli_rank, args=(2, _free_port(), _argv(folder, data, recipe, two),
                              str(tmp_path / "rc")), nprocs=2, join=True)
    assert [(tmp_path / f"rc.{r}").read_text() for r in (0, 1)] == ["0", "0"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks (torchrun sets OMP_NUM_THREADS=1)
    try:
        assert main(_argv(folder, data, recipe, tmp_path / "one.cnn")) == 0
    finally:
        torch.set_num_threads(threads)
    assert two.read_bytes() == (tmp_path / "one.cnn").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".cnn") == \
        ["one.cnn", "two.cnn"]  # no sidecar files left


def _stream_rank(rank: int, world: int, port: int, folder: str, out: str,
                 resume: bool, stop_after: int | None) -> None:
    from compactnn.stream import compress

    from .conftest import inputs

    _env(rank, world, port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        with parallel.using(parallel.Parallel()):
            compress(folder, WANDA, inputs(), out, metadata={"run": "resume"},
                     resume=resume, stop_after=stop_after)
    finally:
        dist.destroy_process_group()


WANDA = [{"method": "prune", "p": 50, "criterion": "wanda", "calibrate": 16},
         {"method": "cws", "k": 8, "calibrate": 24}]


def test_two_ranks_resume_to_the_one_process_file(tmp_path):
    """A 2-rank streaming run stopped after block 0 (head + block 0 done), resumed by 2
    ranks, and one stopped after block 1, resumed by one process: both files equal the
    uninterrupted one-process file byte for byte."""
    pytest.importorskip("transformers")
    from compactnn.stream import compress

    from .conftest import inputs, make_sharded

    folder = str(make_sharded("llama", tmp_path / "m"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks
    try:
        compress(folder, WANDA, inputs(), tmp_path / "one.cnn", metadata={"run": "resume"})
    finally:
        torch.set_num_threads(threads)
    for name, stop, ranks in (("a.cnn", 2, 2), ("b.cnn", 3, 1)):
        out = str(tmp_path / name)
        mp.spawn(_stream_rank, args=(2, _free_port(), folder, out, False, stop),
                 nprocs=2, join=True)
        assert not os.path.exists(out)
        if ranks == 2:
            mp.spawn(_stream_rank, args=(2, _free_port(), folder, out, True, None),
                     nprocs=2, join=True)
        else:
            torch.set_num_threads(1)
            try:
                compress(folder, WANDA, inputs(), out, metadata={"run": "resume"},
                         resume=True)
            finally:
                torch.set_num_threads(threads)
        assert (tmp_path / name).read_bytes() == (tmp_path / "one.cnn").read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == \
        ["a.cnn", "b.cnn", "one.cnn"]
