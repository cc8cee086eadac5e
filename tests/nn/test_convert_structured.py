"""to_compact / save / load on models with permuted-feature and MPD (block-masked or
block-diagonal) layers: their own formats are chosen, outputs match the source model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import compactnn
from compactnn import zoo
from compactnn.formats.blockdiag import BlockDiag
from compactnn.formats.permseq import PermSeq
from compactnn.nn import CompactConv2d, CompactLinear, compactable_layers, layer_records
from compactnn.transforms import (
    MPD,
    BlockDiagConv2d,
    BlockDiagLinear,
    PermutedLinear,
    bake_,
    block_mask_,
    compress_,
    mpd_,
    to_block_diagonal_,
)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def permuted_model() -> nn.Sequential:
    torch.manual_seed(0)
    trained = nn.Linear(32, 16)
    return nn.Sequential(nn.Flatten(), PermutedLinear(64, 32, groups=2, seed=5), nn.ReLU(),
                         PermutedLinear.from_linear(trained, groups=3), nn.ReLU(),
                         nn.Linear(16, 10))


def mpd_model(fuse: bool | None) -> nn.Module:
    """LeNet-300-100 (64 inputs) with 4-block masks: masked (None), or converted to
    block-diagonal layers with or without fused permutations."""
    torch.manual_seed(1)
    net = zoo.build("lenet300", in_features=64)
    mpd_(net, MPD(blocks=4, seed=7, rescale_init=True))
    if fuse is not None:
        bake_(net)
        to_block_diagonal_(net, fuse=fuse)
    return net


def conv_model(fuse: bool = True) -> nn.Sequential:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 6, 3, stride=2, padding="valid"), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6 * 2 * 2, 5))
    block_mask_(net[0], 2, seed=3)
    block_mask_(net[3], 3, seed=4)
    bake_(net)
    to_block_diagonal_(net, fuse=fuse)
    assert isinstance(net[0], BlockDiagConv2d) and net[0].fused_out == fuse
    return net


def test_compactable_layers_include_structured_layers():
    names = [(n, type(m).__name__) for n, m in compactable_layers(permuted_model())]
    assert names == [("1", "PermutedLinear"), ("3", "PermutedLinear"), ("5", "Linear")]
    names = [type(m).__name__ for _, m in compactable_layers(mpd_model(fuse=True))]
    assert names == ["BlockDiagLinear"] * 3


def test_permuted_layers_convert_to_permseq_and_round_trip(tmp_path):
    src = permuted_model()
    x = torch.randn(7, 1, 8, 8)
    cm = compactnn.to_compact(src, {"3": "permseq"})  # "1": smallest
    recs = {r.name: r for r in layer_records(cm)}
    assert recs["1"].format == recs["3"].format == "permseq"
    assert recs["3"].bytes == 3 * 32 * 4 + 16 + 16 * 32  # base, uint8 groups and indices
    seeded, derived = cm[1].matrix, cm[3].matrix
    assert isinstance(seeded, PermSeq) and seeded.seed == 5 and seeded.perm.size == 0
    assert derived.seed is None and derived.groups == 3
    assert seeded.nbytes == 2 * 64 * 4  # only the base sequences
    assert recs["1"].bytes < recs["1"].candidates["dense"] / 8
    with torch.no_grad():
        ref = src(x)
    assert close(cm(x), ref)
    path = tmp_path / "perm.cnn"
    compactnn.save(cm, path)
    for skeleton in (src, compactnn.nn.to_dense(cm)):  # structured or plain skeleton
        loaded = compactnn.load(path, model=skeleton)
        assert isinstance(loaded[1], CompactLinear) and loaded[1].matrix.seed == 5
        assert torch.equal(loaded(x), cm(x))
    # any other format stores the gathered weight: same function
    assert close(compactnn.to_compact(src, "csr")(x), ref)


@pytest.mark.parametrize("fuse", [None, False, True])
def test_mpd_models_convert_to_seeded_blockdiag_and_round_trip(tmp_path, fuse):
    src = mpd_model(fuse)
    x = torch.randn(9, 64)
    with torch.no_grad():
        ref = src(x)
    cm = compactnn.to_compact(src)
    for r, layer, seed in zip(layer_records(cm), (cm[1], cm[3], cm[5]), (7, 8, 9), strict=True):
        assert r.format == "blockdiag"
        M = layer.matrix
        assert isinstance(M, BlockDiag) and (M.seed, M.blocks) == (seed, 4)
        assert M.rows.size == 0 and M.nbytes == 4 * M.data.size  # blocks only
    assert close(cm(x), ref)
    path = tmp_path / "mpd.cnn"
    compactnn.save(cm, path, zoo=("lenet300", {"in_features": 64}))
    assert torch.equal(compactnn.load(path)(x), cm(x))
    assert torch.equal(compactnn.load(path, model=src)(x), cm(x))


def test_block_diagonal_convolutions_convert_and_round_trip(tmp_path):
    src = conv_model()
    x = torch.randn(3, 4, 10, 10)
    with torch.no_grad():
        ref = src(x)
    cm = compactnn.to_compact(src, "fastest", example_input=x)
    assert isinstance(cm[0], CompactConv2d) and isinstance(cm[3], CompactConv2d)
    assert close(cm(x), ref)
    cm = compactnn.to_compact(src, {"0": "blockdiag", "3": "blockdiag"})
    assert [r.format for r in layer_records(cm)][:2] == ["blockdiag", "blockdiag"]
    assert cm[0].matrices[0].shape == (8, 4 * 9)
    assert close(cm(x), ref)
    path = tmp_path / "conv.cnn"
    compactnn.save(cm, path)
    assert torch.equal(compactnn.load(path, model=src)(x), cm(x))


def test_masks_composed_with_pruning_and_sharing_store_in_any_format(tmp_path):
    torch.manual_seed(3)
    src = zoo.build("lenet300", in_features=64)
    compress_(src, [{"method": "mpd", "blocks": 4, "layers": ["1", "3"]},
                    {"method": "prune", "p": 90, "layers": ["1", "3"]},
                    {"method": "cws", "k": 8}])
    x = torch.randn(5, 64)
    with torch.no_grad():
        ref = src(x)
    fixed = compactnn.to_compact(src, {"1": "blockdiag", "3": "blockdiag"})
    assert fixed[1].matrix.seed == 0 and fixed[3].matrix.seed == 1
    small = compactnn.to_compact(src, candidates=["csr", "cer", "cser", "ham", "sham"])
    for cm in (fixed, small):
        assert close(cm(x), ref)
        path = tmp_path / "c.cnn"
        compactnn.save(cm, path, zoo=("lenet300", {"in_features": 64}))
        # storage "auto" may archive a layer; it is re-encoded at load (same weights,
        # products summed in another order)
        assert close(compactnn.load(path)(x), ref)
    raw = compactnn.to_compact(src, {"1": "blockdiag", "3": "blockdiag"}, storage="raw")
    compactnn.save(raw, path, zoo=("lenet300", {"in_features": 64}))
    loaded = compactnn.load(path)
    assert loaded[3].matrix.seed == 1 and torch.equal(loaded(x), raw(x))
    # pruning inside the blocks makes a sparse format smaller than the dense blocks
    assert layer_records(compactnn.to_compact(src))[0].format != "blockdiag"


def test_block_diagonal_layer_twins_compute_the_same_function():
    src = mpd_model(fuse=False)
    lin = src[1]
    assert isinstance(lin, BlockDiagLinear)
    x = torch.randn(4, 64)
    with torch.no_grad():
        assert close(lin.to_linear()(x), lin(x))
    conv = conv_model(fuse=False)[3]
    xc = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        assert close(conv.to_conv()(xc), conv(xc))
