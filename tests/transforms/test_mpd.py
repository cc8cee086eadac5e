"""MPDCompress block masks, block-diagonal layers, the ``blockdiag`` format and the
composition with pruning and weight sharing."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from compactnn import formats, load, save
from compactnn.bench import threads
from compactnn.formats import FormatError
from compactnn.formats.blockdiag import BlockDiag, even_split, seeded_layout
from compactnn.formats.permseq import seeded_permutations
from compactnn.nn import CompactLinear
from compactnn.nn.blockdiag import BlockDiagConv2d, BlockDiagLinear, BlockMask, fuse_permutations_
from compactnn.train import evaluate, fit
from compactnn.transforms import MPD, mpd_
from compactnn.transforms.mpd import CompactBlocks, block_mask_, to_block_diagonal_
from compactnn.transforms.prune import bake_, prune_layers_
from compactnn.transforms.quantize import kmeans_1d
from compactnn.transforms.sharing import share_layers_
from compactnn.zoo import build, load_dataset


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, np.float32)).view(np.uint32)


# ---- the mask -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,N", [((30, 20), 4), ((7, 13), 3), ((10, 100), 10), ((5, 9), 9)])
def test_block_mask_structure(shape, N):
    spec = BlockMask(shape, N, seed=1)
    M = spec.dense()
    m, n = shape
    rows, cols, rp, cp = spec.layout
    assert np.array_equal(rows, seeded_permutations(1, 1, m, 0)[0])
    assert np.array_equal(cols, seeded_permutations(1, 1, n, 1)[0])
    assert np.ptp(np.diff(rp)) <= 1 and np.ptp(np.diff(cp)) <= 1  # uneven split by at most 1
    # P M Q is block diagonal with all-ones blocks
    Mp = M[rows][:, cols]
    ref = np.zeros_like(Mp)
    for b in range(N):
        ref[rp[b] : rp[b + 1], cp[b] : cp[b + 1]] = True
    assert np.array_equal(Mp, ref)
    assert spec.density == pytest.approx(M.mean())
    assert not np.array_equal(BlockMask(shape, N, seed=2).dense(), M) or N == 1


def test_even_split_matches_numpy():
    for total, N in [(300, 8), (10, 16), (0, 3), (7, 7)]:
        sizes = [len(a) for a in np.array_split(np.arange(total), N)]
        assert np.diff(even_split(total, N)).tolist() == sizes


@pytest.mark.parametrize("N", [0, 31, -1, 2.0, True])
def test_block_mask_rejects_bad_blocks(N):
    with pytest.raises(ValueError, match="blocks"):
        BlockMask((30, 20), N, seed=0)


# ---- masked training ------------------------------------------------------------------------


def test_masked_weights_are_zero_and_get_no_gradient():
    torch.manual_seed(0)
    lin = nn.Linear(20, 12)
    spec = block_mask_(lin, 3, seed=7)
    param = lin.parametrizations.weight.original
    keep = torch.from_numpy(spec.dense())
    assert (bits(lin.weight.detach())[~keep.numpy()] == 0).all()  # +0.0, not -0.0
    opt = torch.optim.AdamW(lin.parameters(), 1e-2, weight_decay=0.1)
    for _ in range(5):
        loss = lin(torch.randn(8, 20)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        assert (param.grad[~keep] == 0).all()
        opt.step()
    bake_(lin)
    assert lin.weight is param and not hasattr(lin, "parametrizations")
    assert (bits(lin.weight.detach())[~keep.numpy()] == 0).all()
    assert lin.block_mask == spec
    with pytest.raises(ValueError, match="once per layer"):
        block_mask_(lin, 3, seed=7)


def test_rescaled_initialisation_keeps_output_scale():
    torch.manual_seed(0)
    lin = nn.Linear(400, 200)
    before = lin.weight.detach().clone()
    spec = block_mask_(lin, 16, seed=1, rescale_init=True)
    keep = torch.from_numpy(spec.dense())
    W = lin.weight.detach()
    assert torch.allclose(W[keep], before[keep] * spec.density**-0.5)
    x = torch.randn(256, 400)
    ratio = (x @ W.T).std() / (x @ before.T).std()
    assert 0.9 < ratio < 1.1, ratio


def test_conv_mask_covers_channel_groups():
    conv = nn.Conv2d(6, 8, 3)
    spec = block_mask_(conv, 2, seed=0)
    W = conv.weight.detach()
    kept = (W != 0).any(dim=(2, 3)).numpy()
    assert np.array_equal(kept, spec.dense())
    with pytest.raises(ValueError, match="groups=1"):
        block_mask_(nn.Conv2d(4, 4, 3, groups=2), 2, seed=0)
    with pytest.raises(TypeError, match="nn.Linear"):
        block_mask_(nn.BatchNorm1d(3), 2, seed=0)


# ---- conversion to block-diagonal layers -----------------------------------------------------


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(37, 29), nn.ReLU(), nn.Linear(29, 23), nn.Tanh(),
                         nn.Linear(23, 5))


@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("N", [1, 4, 5])
def test_block_diagonal_mlp_equals_masked_dense(fuse, N):
    torch.manual_seed(N)
    net = mlp()
    mpd_(net, MPD(blocks=N, seed=3))
    x = torch.randn(11, 37)
    with torch.no_grad():
        ref = net(x)
    bake_(net)
    masked = [net[i].weight.detach().clone() for i in (1, 3, 5)]
    new = to_block_diagonal_(net, fuse=fuse)
    assert list(new) == ["1", "3", "5"]
    assert [net[i].fused_out for i in (1, 3, 5)] == [fuse, fuse, False]
    with torch.no_grad():
        out = net(x)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    for i, W in zip((1, 3, 5), masked, strict=True):
        assert torch.equal(net[i].dense_weight(), W)
        M = net[i].to_blockdiag()
        assert M.seed == 3 + (i - 1) // 2 and M.blocks == N
        area = round(BlockMask(tuple(W.shape), N, M.seed).density * W.numel())
        assert M.nbytes == M.data.nbytes == 4 * area  # the seed replaces the layout
        assert np.array_equal(bits(M.to_dense()), bits(W.numpy()))
        assert np.array_equal(M.data.view(np.uint32), M.to_buffers()[0]["data"].view(np.uint32))


def test_batched_and_single_inputs():
    lin = nn.Linear(16, 12)
    block_mask_(lin, 4, seed=2)
    layer = BlockDiagLinear.from_linear(lin)
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.allclose(layer(x), lin(x), atol=1e-6)
        assert torch.allclose(layer(x[0, 0]), lin(x[0, 0]), atol=1e-6)


def conv_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(5, 12, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(12, 7, 3, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(7 * 3 * 3, 10), nn.ReLU(), nn.Linear(10, 4))


def test_conv_block_diagonal_equals_masked_dense():
    torch.manual_seed(0)
    net = conv_net()
    mpd_(net, MPD(blocks=3, seed=1))
    x = torch.randn(2, 5, 16, 16)
    with torch.no_grad():
        ref = net(x)
    convs = [net[0].weight.detach().clone(), net[3].weight.detach().clone()]
    to_block_diagonal_(net)
    assert isinstance(net[0], BlockDiagConv2d) and isinstance(net[3], BlockDiagConv2d)
    assert net[0].fused_out and not net[3].fused_out  # no fusion across Flatten
    assert net[6].fused_out and not net[8].fused_out
    with torch.no_grad():
        assert torch.allclose(net(x), ref, rtol=1e-5, atol=1e-5)
    for layer, W in zip((net[0], net[3]), convs, strict=True):
        assert torch.equal(layer.dense_weight(), W)
        M = layer.to_blockdiag()  # flattened (out, in*kh*kw), channel layout expanded
        assert M.seed is None
        assert np.array_equal(bits(M.to_dense()), bits(W.reshape(W.shape[0], -1).numpy()))


def test_layer_from_irregular_layout_with_empty_rows():
    W = np.zeros((6, 5), np.float32)
    W[0, 1], W[3, 1], W[3, 4], W[5, 0] = 1.0, -2.0, 0.5, 3.0  # rows 1, 2, 4 are empty
    M = BlockDiag.from_dense(W)
    assert M.blocks == 2 and M.seed is None
    bias = torch.arange(6, dtype=torch.float32)
    layer = BlockDiagLinear(M, bias)
    x = torch.randn(4, 5)
    with torch.no_grad():
        assert torch.allclose(layer(x), x @ torch.from_numpy(W).T + bias, atol=1e-6)
    assert np.array_equal(bits(layer.to_blockdiag().to_dense()), bits(W))
    assert layer.to_blockdiag() == M


def test_block_form_fine_tuning_keeps_padding_zero():
    lin = nn.Linear(10, 7)  # 7 rows into 3 blocks: 3, 2, 2 -> padded to 3
    block_mask_(lin, 3, seed=0)
    layer = BlockDiagLinear.from_linear(lin)
    pad = layer.weight.detach() == 0
    opt = torch.optim.SGD(layer.parameters(), 0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(5, 10)).pow(2).sum().backward()
        opt.step()
    M = layer.to_blockdiag()  # from_masked would raise if the padding had moved
    assert M.seed == 0
    assert (layer.weight.detach()[pad] == 0).all()


# ---- the format's seeded mode --------------------------------------------------------------


def test_seeded_blockdiag_stores_only_blocks():
    rng = np.random.default_rng(0)
    spec = BlockMask((40, 24), 4, seed=9)
    W = (rng.standard_normal((40, 24)) * spec.dense()).astype(np.float32)
    W[~spec.dense()] = 0.0
    M = BlockDiag.from_masked(W, 4, 9)
    assert M.nbytes == 4 * 40 * 24 // 4 == M.data.nbytes
    bufs, attrs = M.to_buffers()
    assert attrs["seed"] == 9 and attrs["blocks"] == 4
    M2 = BlockDiag.from_buffers(bufs, attrs)
    assert np.array_equal(bits(M2.to_dense()), bits(W))
    X = rng.standard_normal((24, 6)).astype(np.float32)
    assert np.allclose(M2.matmul(X), W.astype(np.float64) @ X, atol=1e-5)
    W[0, int(np.flatnonzero(~spec.dense()[0])[0])] = -0.0  # -0.0 outside: not lossless
    with pytest.raises(ValueError, match="outside"):
        BlockDiag.from_masked(W, 4, 9)
    for bad in ({**attrs, "blocks": 0}, {**attrs, "blocks": 41}, {**attrs, "seed": -3},
                {**attrs, "seed": "1"}, {**attrs, "blocks": 5}):
        with pytest.raises(FormatError, match="blockdiag"):
            BlockDiag.from_buffers(bufs, bad)
    with pytest.raises(FormatError, match="stores no"):
        BlockDiag.from_buffers({**bufs, "rows": np.arange(40, dtype=np.uint8)}, attrs)


def test_stored_layout_corruption_with_several_blocks():
    W = np.kron(np.eye(3, dtype=np.float32), np.ones((2, 2), np.float32))
    M = BlockDiag.from_dense(W)
    assert M.blocks == 3 and M.row_ptr.tolist() == [0, 2, 4, 6]
    bufs, attrs = M.to_buffers()
    bad = bufs["row_ptr"].copy()
    bad[1], bad[2] = 4, 2
    with pytest.raises(FormatError, match="non-decreasing"):
        BlockDiag.from_buffers({**bufs, "row_ptr": bad}, attrs)
    with pytest.raises(FormatError, match="blockdiag"):
        BlockDiag.from_buffers(bufs, {**attrs, "blocks": 2})


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 30), n=st.integers(0, 30), N=st.integers(1, 8), seed=st.integers(0, 2**40))
def test_seeded_layout_round_trip(m, n, N, seed):
    N = min(N, max(m, n, 1))
    rng = np.random.default_rng(seed)
    keep = BlockMask((m, n), N, seed).dense()
    W = np.where(keep, rng.standard_normal((m, n)), 0).astype(np.float32)
    M = BlockDiag.from_masked(W, N, seed)
    assert np.array_equal(bits(M.to_dense()), bits(W))
    assert M.layout()[2].tolist() == seeded_layout((m, n), N, seed)[2].tolist()
    x = rng.standard_normal(n).astype(np.float32)
    assert np.allclose(M.matvec(x), W.astype(np.float64) @ x, atol=1e-5)


# ---- composition with pruning and weight sharing -------------------------------------------


@pytest.mark.parametrize("fid", ["csr", "cer", "cser"])
def test_block_mask_then_prune_and_share(fid):
    torch.manual_seed(0)
    lin = nn.Linear(48, 32)
    spec = block_mask_(lin, 4, seed=5)
    outside = ~spec.dense()
    prune_layers_({"fc": lin}, 87.5)  # 75% are masked already: half of the block entries go
    share_layers_({"fc": lin}, functools.partial(kmeans_1d, k=8))
    bake_(lin)
    W = lin.weight.detach().numpy()
    assert (bits(W)[outside] == 0).all()
    assert np.count_nonzero(W) == W.size // 8
    assert len(np.unique(W[W != 0])) <= 8
    M = BlockDiag.from_masked(W, 4, 5)
    C = CompactBlocks(M, fid)
    assert np.array_equal(bits(C.to_dense()), bits(W))
    x = np.random.default_rng(1).standard_normal((48, 3)).astype(np.float32)
    assert np.allclose(C.matmul(x), W.astype(np.float64) @ x, atol=1e-5)
    assert np.allclose(C.matvec(x[:, 0]), W.astype(np.float64) @ x[:, 0], atol=1e-5)
    assert C.nbytes < M.nbytes  # sparse, low-entropy blocks beat dense blocks
    whole = formats.get(fid).from_dense(W)  # the zeros outside the blocks cost nothing there
    assert np.array_equal(bits(whole.to_dense()), bits(W))
    layer = BlockDiagLinear.from_linear(lin)  # still converts after pruning and sharing
    with torch.no_grad():
        xt = torch.from_numpy(x.T.copy())
        assert torch.allclose(layer(xt), lin(xt), atol=1e-5)


# ---- training ---------------------------------------------------------------------------------


def test_mpd_training_on_digits():
    torch.manual_seed(0)
    train, test = load_dataset("digits")
    net = build("lenet300", in_features=64)
    mpd_(net, MPD(blocks=4, seed=0))
    with threads(1):  # the machine is shared: avoid oversubscribing its cores
        fit(net, train, epochs=8, lr=3e-3, batch_size=64, progress=False)
        acc = evaluate(net, test)["accuracy"]
        bake_(net)
        to_block_diagonal_(net)
        acc2 = evaluate(net, test)["accuracy"]
    assert acc > 0.85, acc
    assert abs(acc2 - acc) <= 1 / len(test)  # same model, float rounding only
    assert fuse_permutations_(net) == 0  # already fused: nothing left to do


def test_seeded_model_file_stores_blocks_only(tmp_path):
    torch.manual_seed(0)
    net = build("lenet300")
    mpd_(net, MPD(blocks=10, seed=0))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref = net(x)
    bake_(net)
    for name, layer in to_block_diagonal_(net, fuse=False).items():
        setattr(net, name, CompactLinear(layer.to_blockdiag(), layer.bias.detach()))
    size = save(net, tmp_path / "m.cnn", zoo=("lenet300", {}))
    kept = 4 * (784 * 300 + 300 * 100 + 100 * 10) // 10
    assert size < kept + 4 * 410 + 4096  # blocks + biases + header: ~10x below dense
    back = load(tmp_path / "m.cnn")
    with torch.no_grad():
        assert torch.allclose(back(x), ref, atol=1e-5)
