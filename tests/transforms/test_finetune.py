"""Fine-tuning keeps every constraint exactly: zeros, assignments, at most k values."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from compactnn import train, zoo
from compactnn.transforms import (
    SharedWeights,
    bake_,
    kmeans_1d,
    prune_layers_,
    pws_1d,
    share_layers_,
    uq_1d,
)
from compactnn.transforms.prune import layers_of


@pytest.fixture(scope="module")
def digits():
    return zoo.load_dataset("digits")


def test_codebook_gradient_is_the_sum_of_weight_gradients():
    torch.manual_seed(0)
    a, b = nn.Linear(6, 4), nn.Linear(4, 3)
    books = share_layers_({"a": a, "b": b}, functools.partial(kmeans_1d, k=3), shared=True)
    assert books["a"] is books["b"]
    ra, rb = torch.randn(4, 6), torch.randn(3, 4)
    ((a.weight * ra).sum() + (b.weight * rb).sum()).backward()
    book = books["a"]
    expect = torch.zeros_like(book)
    for layer, r in ((a, ra), (b, rb)):
        assign = layer.parametrizations.weight[0].assign.long()  # stored as int8
        expect.index_add_(0, assign[assign >= 0], r[assign >= 0])
    torch.testing.assert_close(book.grad, expect)


@pytest.mark.parametrize("quantizer", [functools.partial(kmeans_1d, k=8),
                                       functools.partial(pws_1d, k=8, seed=1),
                                       functools.partial(uq_1d, k=8)])
@pytest.mark.parametrize("shared", [False, True])
def test_finetuning_keeps_zeros_and_assignments(digits, quantizer, shared):
    tr, _ = digits
    torch.manual_seed(0)
    model = zoo.build("lenet5", image_size=16)
    x = torch.nn.functional.interpolate(tr.tensors[0], size=16)
    data = torch.utils.data.TensorDataset(x[:256], tr.tensors[1][:256])
    layers = layers_of(model)
    prune_layers_(layers, 60)
    train.fit(model, data, epochs=1, lr=1e-3, progress=False)
    zeros = {n: (layer.weight == 0).clone() for n, layer in layers.items()}
    share_layers_(layers, quantizer, shared=shared)
    before = {n: layer.weight.detach().clone() for n, layer in layers.items()}
    assign = {n: layer.parametrizations.weight[0].assign.clone() for n, layer in layers.items()}
    train.fit(model, data, epochs=1, lr=1e-3, progress=False)
    for n, layer in layers.items():
        con = layer.parametrizations.weight[0]
        assert isinstance(con, SharedWeights) and torch.equal(con.assign, assign[n])
        w = layer.weight.detach()
        assert torch.equal(w == 0, zeros[n] | (assign[n] == -1))
        assert zeros[n].float().mean() >= 0.6 - 1e-3
        assert torch.unique(w[w != 0]).numel() <= 8
        assert not torch.equal(w, before[n])  # the shared values were learned
        # weights that shared a value before still share one
        for j in torch.unique(assign[n][assign[n] >= 0]):
            assert torch.unique(w[assign[n] == j]).numel() == 1
    bake_(model)
    for n, layer in layers.items():
        assert isinstance(layer.weight, nn.Parameter) and torch.equal(layer.weight == 0,
                                                                       zeros[n] | (assign[n] == -1))


def test_masked_finetuning_recovers_accuracy_on_digits(digits):
    tr, te = digits
    torch.manual_seed(0)
    model = zoo.build("lenet300", in_features=64)
    train.fit(model, tr, epochs=3, batch_size=64, progress=False)
    base = train.evaluate(model, te)["accuracy"]
    layers = layers_of(model)
    masks = prune_layers_(layers, 80, "global")
    pruned = train.evaluate(model, te)["accuracy"]
    train.fit(model, tr, epochs=3, lr=1e-3, batch_size=64, progress=False)
    tuned = train.evaluate(model, te)["accuracy"]
    assert tuned > pruned and tuned > base - 0.1
    for n, layer in layers.items():
        assert torch.equal(layer.weight != 0, masks[n])
