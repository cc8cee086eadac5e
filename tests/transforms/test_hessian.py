"""Wanda and SparseGPT pruning (unstructured and N:M) against magnitude pruning, and
their recipe step."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from compactnn.transforms import RecipeError, compress_
from compactnn.transforms.calibrate import input_moments
from compactnn.transforms.hessian import (
    nm_keep,
    parse_pattern,
    prune_layer_,
    prune_solve,
    sparsegpt_prune,
    wanda_keep,
)
from compactnn.transforms.prune import Masked, constraint_of


def correlated_inputs(n: int = 2000, d: int = 64, seed: int = 0) -> torch.Tensor:
    """Inputs with strongly correlated features of very different scales."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d // 4, generator=g, dtype=torch.float64)
    mix = torch.randn(d // 4, d, generator=g, dtype=torch.float64)
    scale = torch.logspace(-1, 1, d, dtype=torch.float64)
    return (z @ mix + 0.05 * torch.randn(n, d, generator=g, dtype=torch.float64)) * scale


def output_error(W: torch.Tensor, Wp: torch.Tensor, X: torch.Tensor) -> float:
    return float(((X @ (W - Wp).T.to(torch.float64)) ** 2).sum())


def magnitude(W: torch.Tensor, p: float, pattern=None) -> torch.Tensor:
    layer = nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer.weight.data.copy_(W)
    prune_layer_(layer, p, "magnitude", pattern)
    return layer.weight.detach()


@pytest.mark.parametrize("pattern", [None, (2, 4)])
def test_sparsegpt_and_wanda_reconstruct_better_than_magnitude(pattern):
    X = correlated_inputs()
    H = X.T @ X / len(X)
    W = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    e_mag = output_error(W, magnitude(W, 50, pattern), X)
    wanda = torch.where(wanda_keep(W, H, 50, pattern), W, 0.0)
    e_wanda = output_error(W, wanda, X)
    sgpt, keep = sparsegpt_prune(W, H, 50, pattern, damp=0.01)
    e_sgpt = output_error(W, sgpt, X)
    assert e_sgpt < 0.8 * e_wanda and e_wanda < e_mag
    # SparseGPT's own mask with the weights left as they were: the update is what helps
    assert e_sgpt < output_error(W, torch.where(keep, W, 0.0), X)
    for Wp in (wanda, sgpt):
        assert int((Wp == 0).sum()) == W.numel() // 2


def test_sparsegpt_counts_and_keeps_existing_zeros():
    X = correlated_inputs(500, 200)
    H = X.T @ X / len(X)
    W = torch.randn(10, 200, generator=torch.Generator().manual_seed(2))
    W[:, :7] = 0
    new, keep = sparsegpt_prune(W, H, 37, block=64)
    assert int((new == 0).sum()) == round(0.37 * W.numel())  # exact across blocks
    assert (new[:, :7] == 0).all() and not keep[:, :7].any()
    assert torch.equal(new != 0, keep)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 23), nm=st.sampled_from(
    [(1, 2), (2, 4), (1, 4), (3, 4), (2, 8)]), seed=st.integers(0, 2 ** 16))
def test_nm_keep_is_a_valid_pattern(rows, cols, nm, seed):
    n, m = nm
    scores = torch.rand(rows, cols, generator=torch.Generator().manual_seed(seed))
    keep = nm_keep(scores, n, m)
    for a in range(0, cols, m):
        group = keep[:, a:a + m]
        assert (group.sum(1) == min(n, group.shape[1])).all()
        # the kept ones are the group's largest
        s = scores[:, a:a + m]
        assert (s.masked_fill(~group, -1).max(1).values >= s.max(1).values).all()


@pytest.mark.parametrize("criterion", ["magnitude", "wanda", "sparsegpt"])
def test_two_four_on_linear_and_conv(criterion):
    torch.manual_seed(0)
    for layer, x in ((nn.Linear(24, 8), torch.randn(64, 24)),
                     (nn.Conv2d(3, 4, 3, padding=1), torch.randn(8, 3, 6, 6))):
        H = input_moments(layer, layer, x)
        before = layer.weight.detach().clone()
        keep = prune_layer_(layer, 50, criterion, (2, 4), H)
        assert isinstance(constraint_of(layer), Masked)
        W = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        groups = (W.reshape(W.shape[0], -1, 4) != 0).sum(-1) if W.shape[1] % 4 == 0 else None
        if groups is not None:
            assert (groups <= 2).all()
        assert torch.equal(keep, layer.weight.detach() != 0)
        if criterion != "sparsegpt":  # only SparseGPT changes the kept weights
            assert torch.equal(layer.weight.detach()[keep], before[keep])


def test_prune_twice_intersects_and_updates_the_original():
    torch.manual_seed(0)
    layer, x = nn.Linear(16, 4, bias=False), torch.randn(200, 16)
    H = input_moments(layer, layer, x)
    first = prune_layer_(layer, 25, "sparsegpt", None, H)
    second = prune_layer_(layer, 50, "sparsegpt", None, H)
    assert not (second & ~first).any() and int((~second).sum()) == 32
    assert torch.equal(layer.weight.detach() != 0, second)


def toy(seed: int = 0) -> tuple[nn.Module, TensorDataset]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = correlated_inputs(256, 16, seed).to(torch.float32)
    return model, TensorDataset(x, model(x).detach())


def test_recipe_sparsegpt_24_then_gptq_sharing_keeps_the_pattern():
    model, data = toy()
    report = compress_(model, [
        {"method": "prune", "criterion": "sparsegpt", "pattern": "2:4", "calibrate": 128},
        {"method": "cws", "k": 8, "calibrate": 128}], data)
    for layer in (model[0], model[2]):
        W = layer.weight.detach()
        assert ((W.reshape(W.shape[0], -1, 4) != 0).sum(-1) <= 2).all()
        assert len(torch.unique(W[W != 0])) <= 8
    assert [round(s.sparsity, 3) for s in report.layers] == [0.5, 0.5]


def test_recipe_criteria_beat_magnitude_on_the_toy_model():
    errs = {}
    for criterion in ("magnitude", "wanda", "sparsegpt"):
        model, data = toy()
        compress_(model, [{"method": "prune", "p": 60, "criterion": criterion,
                           "calibrate": 256}], data)
        x, y = data.tensors
        errs[criterion] = float(((model(x) - y) ** 2).mean().detach())
    assert errs["sparsegpt"] < errs["magnitude"] and errs["wanda"] < errs["magnitude"]


@pytest.mark.parametrize("step, match", [
    ({"method": "prune", "p": 50, "criterion": "obs"}, "criterion"),
    ({"method": "prune", "pattern": "4:2"}, "pattern"),
    ({"method": "prune", "pattern": "two:four"}, "pattern"),
    ({"method": "prune", "p": 30, "pattern": "2:4"}, "contradicts"),
    ({"method": "prune", "pattern": "2:4", "schedule": [20]}, "schedule"),
    ({"method": "prune", "p": 50, "criterion": "wanda", "scope": "global"}, "global"),
    ({"method": "prune", "p": 50, "criterion": "sparsegpt", "calibrate": 0}, "calibrate"),
    ({"method": "prune", "p": 50, "criterion": "sparsegpt", "damp": 0}, "damp"),
    ({"method": "prune"}, "missing"),
])
def test_bad_prune_steps_are_recipe_errors(step, match):
    model, data = toy()
    with pytest.raises(RecipeError, match=match):
        compress_(model, [step], data)


def test_data_aware_pruning_needs_train_data():
    model, _ = toy()
    with pytest.raises(RecipeError, match="train_data"):
        compress_(model, [{"method": "prune", "p": 50, "criterion": "wanda"}])
    compress_(model, [{"method": "prune", "pattern": "1:4"}])  # magnitude N:M needs none
    assert (model[0].weight != 0).sum(1).eq(4).all()


def test_prune_step_round_trip_and_pattern_parsing():
    from compactnn.transforms import Recipe

    r = Recipe.from_list([{"method": "prune", "pattern": "2:4", "criterion": "sparsegpt"}])
    assert r.steps[0].config.p == 50
    assert Recipe.from_list(r.to_list()) == r
    assert parse_pattern(" 1 : 8 ") == (1, 8)
    with pytest.raises(ValueError, match="N:M"):
        parse_pattern("2:2")


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(2, 12), cut=st.integers(1, 11), seed=st.integers(0, 2**16),
       how=st.sampled_from([("wanda", None), ("wanda", (2, 4)), ("magnitude", (1, 4))]))
def test_row_pieces_give_the_whole_layers_mask(rows, cut, seed, how):
    """What ``transforms.parallel`` ranks compute for row ranges of one layer, put
    together, is the whole layer's mask (the rows of these criteria are independent)."""
    cut = min(cut, rows - 1)
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(8, rows, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-3, 4, (rows, 8), generator=g).float())  # ties, zeros
    X = torch.randn(50, 8, generator=g, dtype=torch.float64)
    H = X.T @ X
    criterion, pattern = how
    whole, _ = prune_solve(layer, 50, criterion, pattern, H)
    parts = [prune_solve(layer, 50, criterion, pattern, H, rows=r)[0]
             for r in ((0, cut), (cut, rows))]
    assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(RecipeError, match="rows independently"):
        prune_solve(layer, 50, "sparsegpt", None, H, rows=(0, cut))
