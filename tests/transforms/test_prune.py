"""Magnitude pruning: exact counts, global threshold, mask parametrization, bake."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compactnn.transforms import Masked, bake_, magnitude_masks, prune_layers_, share_layers_
from compactnn.transforms.prune import constraint_of, layers_of
from compactnn.transforms.quantize import kmeans_1d


def test_layer_scope_prunes_exactly_p_percent_smallest():
    g = torch.Generator().manual_seed(0)
    w = {"a": torch.randn(30, 20, generator=g), "b": torch.randn(7, 3, 3, 3, generator=g)}
    for p in (0, 12.5, 50, 90, 99.9):
        masks = magnitude_masks(w, p)
        for k, m in masks.items():
            assert m.shape == w[k].shape and m.dtype == torch.bool
            assert (~m).sum().item() == round(p / 100 * w[k].numel())
            if 0 < (~m).sum() < m.numel():
                assert w[k][~m].abs().max() <= w[k][m].abs().min()


def test_global_scope_uses_one_threshold():
    w = {"a": torch.linspace(-1, 1, 101), "b": torch.linspace(-10, 10, 50)}
    masks = magnitude_masks(w, 60, "global")
    pruned = torch.cat([w[k][~m] for k, m in masks.items()]).abs()
    kept = torch.cat([w[k][m] for k, m in masks.items()]).abs()
    assert pruned.numel() == round(0.6 * 151) and pruned.max() <= kept.min()
    assert masks["a"].float().mean() < masks["b"].float().mean()  # small layer pruned more
    with pytest.raises(ValueError, match="one percentage"):
        magnitude_masks(w, {"a": 10, "b": 20}, "global")
    with pytest.raises(ValueError, match="scope"):
        magnitude_masks(w, 10, "row")


def test_ties_are_broken_by_position():
    masks = magnitude_masks({"a": torch.ones(10)}, 30)
    assert masks["a"].tolist() == [False] * 3 + [True] * 7


def test_mask_parametrization_zero_gradient_and_bake():
    torch.manual_seed(0)
    lin = nn.Linear(20, 10)
    w0 = lin.weight.detach().clone()
    w0[0, 0] = -1e-9  # tiny negative: pruned to +0.0, never -0.0
    lin.weight.data.copy_(w0)
    mask = prune_layers_({"lin": lin}, 70)["lin"]
    assert isinstance(constraint_of(lin), Masked)
    W = lin.weight
    assert torch.equal(W[mask], w0[mask]) and (W[~mask] == 0).all()
    assert not torch.signbit(W[~mask]).any()
    lin(torch.randn(4, 20)).pow(2).sum().backward()
    orig = lin.parametrizations.weight.original
    assert (orig.grad[~mask] == 0).all() and (orig.grad[mask] != 0).any()
    bake_(lin.modules())
    assert not hasattr(lin, "parametrizations") and lin.weight is orig
    assert torch.equal(lin.weight.detach() == 0, ~mask)


def test_pruning_again_only_adds_zeros():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 8), nn.Conv2d(1, 2, 3))
    layers = layers_of(model)
    first = prune_layers_(layers, 50)
    with torch.no_grad():  # revive the pruned originals: they must stay pruned
        layers["0"].parametrizations.weight.original.fill_(1.0)
    second = prune_layers_(layers, 30)
    for name in layers:
        assert (second[name] <= first[name]).all()
        assert (layers[name].weight[~first[name]] == 0).all()
    bake_(model)
    third = prune_layers_(layers, 10)  # baked zeros count as pruned
    assert (third["0"] <= second["0"]).all()


def test_cannot_prune_a_weight_shared_layer():
    lin = nn.Linear(10, 5)
    share_layers_({"l": lin}, lambda v: kmeans_1d(v, 4))
    with pytest.raises(ValueError, match="prune before sharing"):
        prune_layers_({"l": lin}, 50)


def test_foreign_parametrization_is_left_alone():
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    lin = nn.Linear(3, 3)
    parametrize.register_parametrization(lin, "weight", Double())
    with pytest.raises(ValueError, match="did not add"):
        prune_layers_({"l": lin}, 50)
    bake_(lin)
    assert parametrize.is_parametrized(lin, "weight")
    assert np.isfinite(lin.weight.detach().numpy()).all()
