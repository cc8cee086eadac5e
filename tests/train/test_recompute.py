"""Weights rebuilt for the backward pass (``compactnn.train.recompute``): the same
gradients, bit for bit, without keeping the dense weights of pruned or shared layers."""

import functools

import pytest
import torch
from torch import nn

from compactnn.train.recompute import rebuild_marked
from compactnn.transforms import kmeans_1d, prune_layers_, share_layers_


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(12, 20), nn.GELU(), nn.Linear(20, 16), nn.GELU(),
                        nn.Linear(16, 5))
    prune_layers_({"0": net[0], "2": net[2], "4": net[4]}, 40)
    share_layers_({"2": net[2], "4": net[4]}, functools.partial(kmeans_1d, k=6))
    return net  # layer 0 pruned (Masked), layers 2 and 4 shared


def _grads(net: nn.Module, x: torch.Tensor, rebuild: bool) -> list[torch.Tensor]:
    net.zero_grad(set_to_none=True)
    ctx = rebuild_marked() if rebuild else torch.autograd.graph.saved_tensors_hooks(
        lambda t: t, lambda t: t)
    with ctx:
        loss = net(x).square().mean()
    loss.backward()
    return [p.grad.clone() for p in net.parameters() if p.grad is not None]


@pytest.mark.parametrize("shape", [(7, 12), (3, 4, 12)])
def test_gradients_are_bit_identical(shape):
    net = _model()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    kept, rebuilt = _grads(net, x, False), _grads(net, x, True)
    assert len(kept) == len(rebuilt) == 6  # Masked original, 2 codebooks, 3 biases
    assert all(torch.equal(a, b) for a, b in zip(kept, rebuilt, strict=True))


def test_the_dense_weights_are_not_kept_for_backward(monkeypatch):
    """What autograd saves: under ``rebuild_marked`` no tensor holding a layer's dense
    weight (the weight or its transpose), but a build function for each layer whose
    input needs a gradient (all but the first)."""
    from compactnn.train import recompute

    net = _model()
    shapes = {tuple(m.weight.shape) for m in (net[0], net[2], net[4])}
    shapes |= {s[::-1] for s in shapes}
    saved: list = []

    def pack(t):
        out = original(t)
        saved.append("rebuilt" if not isinstance(out, torch.Tensor) else
                     "weight" if t.is_floating_point() and tuple(t.shape) in shapes else
                     "other")
        return out

    original = recompute._pack
    monkeypatch.setattr(recompute, "_pack", pack)
    with rebuild_marked():
        loss = net(torch.randn(7, 12)).sum()  # batch 7: no activation has a weight's shape
    loss.backward()
    assert saved.count("rebuilt") == 2 and "weight" not in saved, saved
    saved.clear()
    original = lambda t: t  # noqa: E731  (autograd's own choice: the weights are kept)
    with rebuild_marked():
        net(torch.randn(7, 12)).sum().backward()
    assert saved.count("weight") == 2 and "rebuilt" not in saved, saved


def test_in_place_change_before_backward_is_refused():
    net = _model()
    with rebuild_marked():
        loss = net(torch.randn(3, 12)).sum()
    with torch.no_grad():
        net[2].parametrizations.weight[0].codebook.add_(1.0)
    with pytest.raises(RuntimeError, match="changed in place"):
        loss.backward()


def test_fit_keeps_constraints_and_matches_a_plain_loop():
    """``fit`` runs under ``rebuild_marked``; its steps equal a loop without it."""
    from torch.utils.data import TensorDataset

    from compactnn.train import fit

    g = torch.Generator().manual_seed(2)
    data = TensorDataset(torch.randn(32, 12, generator=g), torch.randn(32, 5, generator=g))
    a, b = _model(), _model()
    fit(a, data, epochs=2, lr=1e-2, batch_size=8, lr_schedule="constant", progress=False)
    opt = torch.optim.Adam([p for p in b.parameters() if p.requires_grad], 1e-2)
    gen = torch.Generator().manual_seed(0)
    x, y = data.tensors
    for _ in range(2):
        order = torch.randperm(32, generator=gen)
        for i in range(0, 32, 8):
            idx = order[i:i + 8]
            loss = nn.functional.mse_loss(b(x[idx]).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert (a[0].weight[~a[0].parametrizations.weight[0].mask] == 0).all()
