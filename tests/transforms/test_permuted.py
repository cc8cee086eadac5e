"""Permuted-feature layers, the seeded permutation generator and the ``permseq`` format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from compactnn import load, save, to_compact
from compactnn.bench import threads
from compactnn.formats import FormatError
from compactnn.formats.permseq import PermSeq, seeded_groups, seeded_permutations
from compactnn.nn import CompactLinear
from compactnn.nn.permuted import PermutedLinear, sorted_row_groups
from compactnn.train import evaluate, fit
from compactnn.transforms import Permute, permute_
from compactnn.transforms.permuted import parameter_count, projected_parameter_count
from compactnn.zoo import build, load_dataset

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix64_ref(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def seeded_permutation_ref(seed: int, i: int, n: int, stream: int = 0) -> list[int]:
    """The generator as specified in ``compactnn.kernels.permute``, in plain Python."""
    state = mix64_ref(mix64_ref(seed) ^ mix64_ref(((stream << 32) + i + 1) & MASK))
    p = list(range(n))
    for t in range(n - 1, 0, -1):
        state = (state + GAMMA) & MASK
        j = mix64_ref(state) % (t + 1)
        p[t], p[j] = p[j], p[t]
    return p


# ---- seeded permutations ----------------------------------------------------------------


@pytest.mark.parametrize("seed,count,n,stream",
                         [(0, 3, 1, 0), (7, 4, 17, 0), (2**63 - 1, 2, 300, 1), (123, 1, 257, 5)])
def test_seeded_permutations_match_specification(seed, count, n, stream):
    got = seeded_permutations(seed, count, n, stream)
    assert got.dtype == (np.uint8 if n <= 256 else np.uint16)
    for i in range(count):
        assert got[i].tolist() == seeded_permutation_ref(seed, i, n, stream)


def test_seeded_permutations_known_answer():
    """Pins the stream: files store only the seed, so it must never change."""
    assert seeded_permutations(2024, 2, 8).tolist() == [
        seeded_permutation_ref(2024, 0, 8), seeded_permutation_ref(2024, 1, 8)]
    assert seeded_permutations(1, 1, 10)[0].tolist() == [6, 3, 2, 9, 8, 1, 4, 7, 0, 5]


def test_seeded_permutations_are_permutations_and_differ():
    p = seeded_permutations(3, 50, 64)
    assert (np.sort(p, axis=1) == np.arange(64)).all()
    assert len({tuple(r) for r in p.tolist()}) == 50
    assert not np.array_equal(seeded_permutations(4, 50, 64), p)
    assert not np.array_equal(seeded_permutations(3, 50, 64, stream=1), p)
    assert np.array_equal(seeded_permutations(3, 50, 64), p)
    # roughly uniform: each value lands in each position about equally often
    big = seeded_permutations(9, 4000, 8).astype(np.int64)
    counts = np.stack([(big == v).sum(0) for v in range(8)])
    assert counts.min() > 400 and counts.max() < 600


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, True, "3"])
def test_seeded_permutations_reject_bad_seed(bad):
    with pytest.raises((ValueError, TypeError)):
        seeded_permutations(bad, 2, 3)


# ---- the layer ----------------------------------------------------------------------------


def test_seeded_layer_rows_are_permuted_base_sequences():
    layer = PermutedLinear(24, 10, groups=3, seed=11)
    W = layer.weight.detach().numpy()
    base = layer.base.detach().numpy()
    g = seeded_groups(10, 3)
    perm = seeded_permutations(11, 10, 24)
    for i in range(10):
        assert np.array_equal(W[i, perm[i]], base[g[i]])
    assert g.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    x = torch.randn(5, 24)
    assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_base_gradient_is_sum_over_the_weights_that_use_it():
    torch.manual_seed(0)
    layer = PermutedLinear(16, 9, groups=2, seed=4)
    x = torch.randn(7, 16)
    loss = (layer(x) ** 2).sum()
    loss.backward()
    # reference: gradient of the dense weight, summed back through the permutations
    W = layer.weight.detach().requires_grad_(True)
    (torch.nn.functional.linear(x, W, layer.bias.detach()) ** 2).sum().backward()
    perm, g = seeded_permutations(4, 9, 16), seeded_groups(9, 2)
    ref = np.zeros((2, 16))
    for i in range(9):
        ref[g[i]] += W.grad.numpy()[i, perm[i]]
    assert np.allclose(layer.base.grad.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_state_dict_stores_seed_not_indices():
    a = PermutedLinear(12, 6, groups=2, seed=3)
    sd = a.state_dict()
    assert set(sd) == {"base", "bias", "perm_seed"} and int(sd["perm_seed"]) == 3
    b = PermutedLinear(12, 6, groups=2, seed=99)
    b.load_state_dict(sd)
    assert b.seed == 3 and torch.equal(a.weight, b.weight)
    d = PermutedLinear.from_linear(nn.Linear(12, 6), groups=2)
    assert "index" in d.state_dict()
    with pytest.raises(ValueError, match="data-derived"):  # a seeded layer holds no indices
        b.load_state_dict(d.state_dict())


def test_data_derived_from_linear():
    torch.manual_seed(1)
    lin = nn.Linear(30, 8)
    W = lin.weight.detach().numpy()
    exact = PermutedLinear.from_linear(lin, groups=8)  # one group per row: lossless
    assert np.array_equal(exact.weight.detach().numpy().view(np.uint32), W.view(np.uint32))
    one = PermutedLinear.from_linear(lin, groups=1)
    Wp = one.weight.detach().numpy()
    assert np.array_equal(np.argsort(Wp, 1, kind="stable"), np.argsort(W, 1, kind="stable"))
    assert np.allclose(one.base.detach().numpy()[0], np.sort(W, 1).mean(0), atol=1e-7)
    assert torch.equal(one.bias, lin.bias)
    four = PermutedLinear.from_linear(lin, groups=4, seed=0)
    err = [np.abs(p.weight.detach().numpy() - W).mean() for p in (one, four, exact)]
    assert err[0] > err[1] > err[2] == 0


def test_sorted_row_groups_kmeans_groups_similar_rows():
    rng = np.random.default_rng(0)
    W = np.concatenate([rng.normal(0, 0.01, (5, 40)), rng.normal(0, 1, (5, 40))]).astype(np.float32)
    perm, group, base = sorted_row_groups(W, 2, seed=0)
    assert len(set(group[:5])) == 1 and len(set(group[5:])) == 1 and group[0] != group[5]
    assert base.shape == (2, 40) and (np.diff(base, axis=1) >= 0).all()


def test_to_permseq_round_trip_both_kinds():
    torch.manual_seed(2)
    x = torch.randn(4, 33)
    seeded = PermutedLinear(33, 21, groups=4, seed=8)
    M = seeded.to_permseq()
    assert M.seed == 8 and M.nbytes == 4 * 33 * 4  # the base sequences only
    assert np.array_equal(M.to_dense(), seeded.weight.detach().numpy())
    bufs, attrs = M.to_buffers()
    M2 = PermSeq.from_buffers(bufs, attrs)
    again = PermutedLinear.from_permseq(M2, seeded.bias)
    assert torch.equal(again(x), seeded(x))
    data = PermutedLinear.from_linear(nn.Linear(33, 21), groups=3)
    D = data.to_permseq()
    assert D.seed is None and D.perm.dtype == np.uint8 and D.group.dtype == np.uint8
    assert np.array_equal(D.to_dense(), data.weight.detach().numpy())
    assert torch.equal(PermutedLinear.from_permseq(D, data.bias)(x), data(x))
    xv = np.random.default_rng(0).standard_normal(33).astype(np.float32)
    ref = seeded.weight.detach().numpy().astype(np.float64) @ xv
    assert np.allclose(M.matvec(xv), ref, atol=1e-5)


def test_permseq_seeded_mode_corruption():
    M = PermSeq.seeded(np.ones((2, 5), np.float32), 4, seed=1)
    bufs, attrs = M.to_buffers()
    for bad_attrs in ({**attrs, "seed": -1}, {**attrs, "seed": 2**63}, {**attrs, "seed": 1.0},
                      {**attrs, "seed": True}):
        with pytest.raises(FormatError, match="permseq"):
            PermSeq.from_buffers(bufs, bad_attrs)
    with pytest.raises(FormatError, match="stores no"):
        PermSeq.from_buffers({**bufs, "perm": np.zeros((4, 5), np.uint8)}, attrs)
    with pytest.raises(FormatError, match="base sequence"):
        PermSeq.from_buffers({**bufs, "base": np.zeros((0, 5), np.float32)}, attrs)


def test_from_parts_rejects_bad_input():
    base = np.ones((1, 3), np.float32)
    with pytest.raises(ValueError, match="negative"):
        PermSeq.from_parts(base, np.zeros(2, np.int64), -np.ones((2, 3), np.int64))
    with pytest.raises(TypeError, match="integers"):
        PermSeq.from_parts(base, np.zeros(2, np.int64), np.zeros((2, 3), np.float32))
    with pytest.raises(FormatError, match="not a permutation"):
        PermSeq.from_parts(base, np.zeros(2, np.int64), np.zeros((2, 3), np.int64))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 40), G=st.integers(1, 5), seed=st.integers(0, 2**32))
def test_permseq_from_parts_products(m, n, G, seed):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((G, n)).astype(np.float32)
    group = rng.integers(0, G, m)
    perm = np.argsort(rng.random((m, n)), axis=1)
    M = PermSeq.from_parts(base, group, perm)
    W = np.empty((m, n), np.float32)
    W[np.arange(m)[:, None], perm] = base[group]
    assert np.array_equal(M.to_dense(), W)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    assert np.allclose(M.matmul(X), W.astype(np.float64) @ X, atol=1e-4)
    S = PermSeq.seeded(base, m, seed)
    Ws = S.to_dense()
    assert (np.sort(Ws, 1) == np.sort(base[seeded_groups(m, G)], 1)).all()
    assert np.allclose(S.matvec(X[:, 0]), Ws.astype(np.float64) @ X[:, 0], atol=1e-4)


# ---- model transform and parameter counts ---------------------------------------------------


def test_permute_keeps_last_layer_dense_and_counts():
    net = build("lenet300")
    dense = parameter_count(net)
    assert dense == 266610
    proj = projected_parameter_count(net, groups=2)
    proj_perm = projected_parameter_count(net, groups=2, count_permutations=True)
    report = permute_(net, Permute(groups=2, kind="data"))
    assert [s.name for s in report.layers] == ["1", "3"] and isinstance(net[5], nn.Linear)
    assert all(isinstance(net[i], PermutedLinear) for i in (1, 3))
    assert parameter_count(net) == proj == 2 * 784 + 300 + 2 * 300 + 100 + 1010
    indices = 784 * 300 + 300 * 100
    assert parameter_count(net, count_permutations=True) == proj_perm == proj + indices
    seeded = build("lenet300")
    permute_(seeded, Permute(groups=2, kind="seeded", seed=5))
    assert parameter_count(seeded, count_permutations=True) == proj + 2
    assert [m.seed for m in seeded.modules() if isinstance(m, PermutedLinear)] == [5, 6]


def vgg16(num_classes: int = 1000) -> nn.Sequential:
    """VGG16 (configuration D, Simonyan & Zisserman 2015) for 224x224 inputs."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512, "M"]
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    layers += [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
               nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, num_classes)]
    return nn.Sequential(*layers)


def test_vgg16_one_sequence_per_hidden_fc_layer_gives_7_3x():
    with torch.device("meta"):
        net = vgg16()
    dense = parameter_count(net)
    assert dense == 138_357_544
    permuted = projected_parameter_count(net, groups=1, last_dense=True)
    assert permuted == dense - (25088 * 4096 + 4096 * 4096) + 25088 + 4096
    assert 7.3 < dense / permuted < 7.4


def test_seeded_training_from_scratch_on_digits():
    torch.manual_seed(0)
    train, test = load_dataset("digits")
    net = build("lenet300", in_features=64)
    permute_(net, Permute(groups=4, kind="seeded", seed=1))
    with threads(1):  # the machine is shared: avoid oversubscribing its cores
        fit(net, train, epochs=8, lr=3e-3, batch_size=64, progress=False)
    acc = evaluate(net, test)["accuracy"]
    assert acc > 0.85, acc
    first = net[1]  # still a permuted-sequence layer after training
    M = first.to_permseq()
    assert M.seed == 1 and np.array_equal(M.to_dense(), first.weight.detach().numpy())


def test_bad_arguments():
    with pytest.raises(ValueError, match="groups"):
        PermutedLinear(4, 4, groups=0)
    with pytest.raises(ValueError, match="in_features"):
        PermutedLinear(0, 4)
    with pytest.raises(TypeError, match="nn.Linear"):
        PermutedLinear.from_linear(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="kind"):
        Permute(kind="random")


def test_seeded_model_file_stores_base_sequences_only(tmp_path):
    torch.manual_seed(0)
    net = build("lenet300")
    report = permute_(net, Permute(groups=2, kind="seeded", seed=3))
    layers = {s.name: net.get_submodule(s.name) for s in report.layers}
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref = net(x)
    for name, layer in layers.items():
        setattr(net, name, CompactLinear(layer.to_permseq(), layer.bias.detach()))
    cm = to_compact(net, "dense")  # the classifier; the permseq layers stay as they are
    size = save(cm, tmp_path / "m.cnn", zoo=("lenet300", {}))
    weights = 4 * (2 * 784 + 2 * 300 + 100 * 10)  # base sequences + dense classifier
    assert size < weights + 4 * 410 + 4096  # + biases + header
    back = load(tmp_path / "m.cnn")
    assert [m.matrix.format_id for m in back.modules() if isinstance(m, CompactLinear)] == [
        "permseq", "permseq", "dense"]
    with torch.no_grad():
        assert torch.allclose(back(x), ref, atol=1e-5)
