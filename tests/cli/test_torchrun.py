"""``torchrun --nproc_per_node 2 -m compactnn compress`` of the in-memory kinds on 2 gloo
ranks (started as torchrun starts them: ``tests/stream/test_distributed.py``) against
one process: a zoo LeNet-300-100 on digits (prune, fine-tune, GPTQ weight sharing,
fine-tune under DistributedDataParallel) whose checkpoint from rank 0 converts to a
compact file with the one-process file's accuracy, and a Hugging Face model distilled
(its LM head gets no gradient)."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from compactnn import io
from compactnn.cli import main
from compactnn.cli.models.zoo import dataset
from compactnn.train import evaluate
from tests.stream.test_distributed import _env, _free_port

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

RECIPE = ("- {method: prune, p: 60}\n"
          "- {method: finetune, epochs: 1, lr: 0.002, batch_size: 50}\n"
          "- {method: cws, k: 8, calibrate: 256}\n"
          "- {method: finetune, epochs: 1, lr: 0.002, batch_size: 50}\n")
WEIGHT_TOL = 1e-6  # max |two ranks - one process| of a weight (measured: 2e-8)
ACCURACY_TOL = 1 / 450  # one digits test sample


def _exit(code: int) -> None:
    """End a rank now: with torch 2.13, DistributedDataParallel keeps the gloo group's
    threads alive after ``destroy_process_group``, and at interpreter exit they abort the
    process now and then ("terminate called without an active exception"), after its
    work is done; the rank's results are written before this."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cli_rank(rank: int, world: int, port: int, argv: list[str], codes: str) -> None:
    _env(rank, world, port)
    code = main(argv)
    with open(f"{codes}.{rank}", "w") as f:
        f.write(str(code))
    _exit(0)


def _one_thread(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks (torchrun sets OMP_NUM_THREADS=1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def _both(tmp_path, argv) -> tuple:
    """Run ``argv + [-o out]`` on 2 ranks and in one process; the two outputs."""
    two, one = tmp_path / "two", tmp_path / "one"
    mp.spawn(_cli_rank, args=(2, _free_port(), [*argv, "-o", str(two)], str(tmp_path / "rc")),
             nprocs=2, join=True)
    assert [(tmp_path / f"rc.{r}").read_text() for r in (0, 1)] == ["0", "0"]
    assert _one_thread([*argv, "-o", str(one)]) == 0
    return two, one


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A LeNet-300-100 trained on digits by `compactnn train`."""
    path = tmp_path_factory.mktemp("torchrun") / "base.safetensors"
    assert main(["train", "--model", "lenet300", "--dataset", "digits", "--epochs", "4",
                 "-o", str(path)]) == 0
    return path


def test_zoo_compress_two_ranks_like_one_process(tmp_path, capsys, base):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    two, one = _both(tmp_path, ["compress", str(base), "--recipe", str(recipe),
                                "--dataset", "digits", "--device", "cpu"])
    a, b = load_file(two), load_file(one)
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    print(f"max |two ranks - one process| weight: {worst:.3g}")
    assert worst <= WEIGHT_TOL
    for k in a:
        if k.endswith("weight") and a[k].dim() == 2:
            assert torch.equal(a[k] == 0, b[k] == 0), k  # the same pruned weights
            va, ia = a[k].unique(return_inverse=True)
            vb, ib = b[k].unique(return_inverse=True)
            assert len(va) == len(vb) <= 9 and torch.equal(ia, ib), k  # the same assignments
    _, te = dataset("digits", None)
    acc = []
    for src in (two, one):
        out = tmp_path / f"{src.name}.cnn"
        assert main(["convert", str(src), "--policy", "smallest", "-o", str(out)]) == 0
        acc.append(evaluate(io.load(out), te)["accuracy"])
    same = (tmp_path / "two.cnn").read_bytes() == (tmp_path / "one.cnn").read_bytes()
    print(f"accuracy two ranks {acc[0]:.4f}, one process {acc[1]:.4f}; same bytes: {same}")
    assert abs(acc[0] - acc[1]) <= ACCURACY_TOL and acc[1] > 0.8


def test_hf_distillation_two_ranks_like_one_process(tmp_path, capsys):
    pytest.importorskip("transformers")
    from compactnn.zoo import hf
    from tests.anymodel.conftest import make_model_dir

    folder, data = make_model_dir("llama", tmp_path / "m")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- {method: prune, p: 50}\n"
                      "- {method: finetune, epochs: 2, lr: 0.001, batch_size: 5}\n")
    two, one = _both(tmp_path, ["compress", str(folder), "--recipe", str(recipe),
                                "--data", str(data), "--device", "cpu"])
    a, b = io.load(two).state_dict(), io.load(one).state_dict()
    original = hf.read_dir(str(folder)).state_dict()
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())
    print(f"max |two ranks - one process| weight (llama): {worst:.3g}")
    assert worst <= WEIGHT_TOL
    pruned = [k for k in a if k.startswith("model.layers.") and k.endswith("proj.weight")]
    assert len(pruned) == 14  # 2 blocks of 7
    for k in pruned:  # the same masks
        assert torch.equal(a[k] != 0, b[k] != 0) and 0.4 < (a[k] != 0).float().mean() < 0.6
    up = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(a[up][a[up] != 0], original[up][a[up] != 0])  # it was fine-tuned


def _failing_rank(rank: int, world: int, port: int, argv: list[str], codes: str) -> None:
    if rank == 0:  # rank 0 cannot write its checkpoint
        from compactnn.errors import UserError
        from compactnn.zoo import checkpoint

        def refuse(*args, **kwargs):
            raise UserError("no space left (test)")

        checkpoint.save_checkpoint = refuse
    _cli_rank(rank, world, port, argv, codes)


def test_rank_zero_failure_ends_every_rank(tmp_path, base):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- {method: prune, p: 50}\n")
    out = tmp_path / "x.safetensors"
    argv = ["compress", str(base), "--recipe", str(recipe), "--dataset", "digits",
            "--device", "cpu", "-o", str(out)]
    mp.spawn(_failing_rank, args=(2, _free_port(), argv, str(tmp_path / "rc")), nprocs=2,
             join=True)
    assert [(tmp_path / f"rc.{r}").read_text() for r in (0, 1)] == ["2", "2"]
    assert not out.exists()
