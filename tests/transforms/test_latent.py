"""Latent weights with a straight-through estimator: assignments move while fine-tuning
(``compactnn.transforms.latent``; the recipe option ``finetune reassign``)."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from compactnn import train
from compactnn.transforms import (
    FineTune,
    RecipeError,
    SharedWeights,
    bake_,
    compress_,
    kmeans_1d,
    prune_layers_,
    share_layers_,
)
from compactnn.transforms.latent import LatentShared, from_latent_, nearest, to_latent_
from compactnn.transforms.recipe import Recipe
from compactnn.transforms.registry import step_type
from compactnn.transforms.shared import RowScaledWeights, index_dtype


def reference_nearest(codebook: torch.Tensor, latent: torch.Tensor, assign: torch.Tensor
                      ) -> torch.Tensor:
    """argmin |latent - value| over the stably sorted codebook, ties to the first
    (the smaller value), -1 where ``assign`` is -1: the slow, obvious version."""
    order = torch.argsort(codebook, stable=True)
    dist = (latent.reshape(-1, 1).double() - codebook[order].double()).abs()
    first = dist.argmin(dim=1)  # argmin returns the first of equal minima
    return torch.where(assign.reshape(-1) < 0, -1, order[first]).reshape(latent.shape)


def shared_mlp(seed: int = 0, k: int = 4, shared: bool = False, prune: float = 0.0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3))
    layers = {"0": model[0], "2": model[2], "4": model[4]}
    if prune:
        prune_layers_(layers, prune)
    share_layers_(layers, functools.partial(kmeans_1d, k=k), shared=shared)
    return model, layers


def toy_data(n: int = 256, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).long() + (x[:, 3] > 1).long()
    return torch.utils.data.TensorDataset(x, y)


def test_nearest_matches_the_reference_with_ties():
    book = torch.tensor([0.5, -1.0, 2.0, 0.5, -0.25])
    latent = torch.tensor([-0.625, 0.125, 1.25, 0.5, 9.0, -9.0, -0.25, 0.0, 7.0])
    assign = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, -1])
    got = nearest(book, latent, assign)
    assert got.dtype == index_dtype(5)
    assert got.tolist() == reference_nearest(book, latent, assign).tolist()
    # on the midpoint -0.625 of -1 and -0.25: the smaller; 0.5 twice: the first (index 0)
    assert got.tolist() == [1, 4, 0, 0, 2, 1, 4, 4, -1]


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 20), rows=st.integers(1, 9), cols=st.integers(1, 9),
       seed=st.integers(0, 2 ** 16))
def test_forward_is_codebook_of_nearest_latent(k, rows, cols, seed):
    g = torch.Generator().manual_seed(seed)
    # values on a grid of 1/8: midpoints exact, so the reference's ties are the same ties
    book = nn.Parameter(torch.randint(-40, 40, (k,), generator=g).float() / 8)
    assign = torch.randint(-1, k, (rows, cols), generator=g)
    layer = nn.Linear(cols, rows)
    parametrize.register_parametrization(layer, "weight", SharedWeights(book, assign))
    before = layer.weight.detach().clone()
    (latent,) = to_latent_(layer)
    assert torch.equal(layer.weight, before)  # same weights before any step
    with torch.no_grad():
        latent.delta.copy_(torch.randint(-48, 48, (rows, cols), generator=g).float() / 16)
    want = reference_nearest(book.detach(), latent.latent.detach(), latent.shared.assign)
    table = torch.cat([book.new_zeros(1), book.detach()])
    assert torch.equal(layer.weight, table[want + 1])
    assert torch.equal(latent.assignment().long(), want)
    from_latent_(layer)
    assert isinstance(layer.parametrizations.weight[0], SharedWeights)
    assert torch.equal(layer.weight, table[want + 1])


def test_gradients_reach_latent_and_codebook():
    torch.manual_seed(0)
    model, layers = shared_mlp(prune=30, shared=True)
    latents = to_latent_(model)
    with torch.no_grad():  # move some latents so the codebook's sums use the new codes
        for lat in latents:
            lat.delta.normal_(0, 0.1)
    grads = {n: torch.randn(layer.weight.shape) for n, layer in layers.items()}
    sum((layer.weight * grads[n]).sum() for n, layer in layers.items()).backward()
    book = latents[0].shared.codebook
    expect = torch.zeros_like(book)
    for lat, g in zip(latents, grads.values(), strict=True):
        keep = lat.shared.assign >= 0
        # the latent's gradient is the weight's, straight through; pruned entries get none
        assert torch.equal(lat.delta.grad[keep], g[keep])
        assert torch.all(lat.delta.grad[~keep] == 0)
        now = lat.assignment().long()
        expect.index_add_(0, now[now >= 0], g[now >= 0])
    assert all(lat.shared.codebook is book for lat in latents)  # one shared codebook
    torch.testing.assert_close(book.grad, expect)


def test_step_scales_how_fast_the_latent_moves():
    model, _ = shared_mlp()
    (lat, *_) = to_latent_(model, step=0.25)
    with torch.no_grad():
        lat.delta.fill_(1.0)
    assert torch.equal(lat.latent, lat.anchor + 0.25)
    with pytest.raises(ValueError, match="step"):
        LatentShared(lat.shared, 0.0)


@pytest.mark.parametrize("shared", [False, True])
def test_fit_moves_assignments_and_swap_back_is_bit_exact(shared):
    model, layers = shared_mlp(shared=shared, prune=40)
    pruned = {n: layer.parametrizations.weight[0].assign == -1 for n, layer in layers.items()}
    before = {n: layer.parametrizations.weight[0].assign.clone() for n, layer in layers.items()}
    books = {n: layer.parametrizations.weight[0].codebook for n, layer in layers.items()}
    originals = {n: layer.parametrizations.weight[0] for n, layer in layers.items()}
    to_latent_(model, step=3.0)
    train.fit(model, toy_data(), epochs=2, lr=1e-2, batch_size=32, progress=False)
    x = torch.randn(64, 6)
    with torch.no_grad():
        latent_out = model(x)
    moved = from_latent_(model)
    assert moved > 0
    with torch.no_grad():
        shared_out = model(x)
    assert torch.equal(latent_out.view(torch.int32), shared_out.view(torch.int32))
    changed = 0
    for n, layer in layers.items():
        con = layer.parametrizations.weight[0]
        assert con is originals[n] and con.codebook is books[n]  # the same objects back
        assert torch.equal(con.assign == -1, pruned[n])  # pruned stays pruned
        assert torch.all(layer.weight.detach()[pruned[n]] == 0)
        changed += int((con.assign != before[n]).sum())
    assert changed == moved
    if shared:
        assert books["0"] is books["2"] is books["4"]
    # baked, the plain model computes the same
    plain = copy.deepcopy(model)
    bake_(plain)
    with torch.no_grad():
        assert torch.equal(plain(x).view(torch.int32), shared_out.view(torch.int32))


def test_row_scaled_table_moves_too():
    torch.manual_seed(0)
    emb = nn.Embedding(20, 8)
    book = nn.Parameter(torch.linspace(-2, 2, 6))
    assign = torch.randint(-1, 6, (20, 8))
    scale = nn.Parameter(torch.rand(20) + 0.5)
    con = RowScaledWeights(book, assign, scale)
    parametrize.register_parametrization(emb, "weight", con)
    before = emb.weight.detach().clone()
    (lat,) = to_latent_(emb)
    assert torch.equal(emb.weight, before)
    opt = torch.optim.Adam(emb.parameters(), 0.05)
    ids = torch.arange(20)
    for _ in range(20):
        opt.zero_grad()
        (emb(ids) - 1.0).square().sum().backward()
        opt.step()
    assert scale.grad is not None and lat.delta.grad.abs().sum() > 0
    with torch.no_grad():
        w_latent = emb.weight.clone()
    assert from_latent_(emb) > 0
    assert emb.parametrizations.weight[0] is con
    assert torch.equal(emb.weight.detach().view(torch.int32), w_latent.view(torch.int32))
    assert torch.all(emb.weight.detach()[assign == -1] == 0)


def test_recipe_reassign_moves_assignments():
    data = toy_data()
    steps = [{"method": "cws", "k": 4}, {"method": "finetune", "epochs": 2, "lr": 1e-2,
                                         "batch_size": 32}]
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    b = copy.deepcopy(a)
    compress_(a, steps, data, bake=False)
    steps[1] = {**steps[1], "reassign": True, "reassign_lr": 3e-2}
    compress_(b, steps, data, bake=False)
    for la, lb in ((a[0], b[0]), (a[2], b[2])):
        ca, cb = la.parametrizations.weight[0], lb.parametrizations.weight[0]
        assert type(cb) is SharedWeights
        assert not torch.equal(ca.assign, cb.assign)  # assignments moved under reassign
        assert torch.unique(lb.weight.detach()).numel() <= 4


def test_distilled_reassign_runs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    compress_(model, [{"method": "cws", "k": 4},
                      {"method": "finetune", "lr": 1e-2, "batch_size": 64, "distill": 0.5,
                       "reassign": True}], toy_data())
    assert all(torch.unique(m.weight.detach()).numel() <= 4 for m in (model[0], model[2]))


def test_recipe_parsing_and_bad_values():
    cfg = Recipe.from_list([{"method": "finetune", "reassign": True,
                             "reassign_lr": 1e-3}]).steps[0].config
    assert cfg == FineTune(reassign=True, reassign_lr=1e-3)
    assert FineTune().reassign is False and FineTune().reassign_lr is None
    with pytest.raises(RecipeError, match="reassign must be true or false"):
        FineTune(reassign="yes")
    with pytest.raises(RecipeError, match="reassign_lr"):
        FineTune(reassign=True, reassign_lr=0)
    with pytest.raises(RecipeError, match="reassign_lr needs reassign"):
        FineTune(reassign_lr=1e-3)
    describe = step_type(FineTune()).describe
    assert "assignments may move" in describe(FineTune(reassign=True))
    assert "latent lr 0.001" in describe(FineTune(reassign=True, reassign_lr=1e-3))
    assert "assignments" not in describe(FineTune())
