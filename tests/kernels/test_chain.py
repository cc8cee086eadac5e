"""Chained forward passes (compactnn.nn.chain): bit-identical to the module-by-module
forward, installed by to_compact and load, and falling back whenever the modules,
hooks, matrices, biases, inputs or kernel path are not those the chain was built for.
(Here in tests/kernels so that `make sanitize` runs csrc/py_chain.c under ASan/UBSan.)"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import compactnn
from compactnn.kernels import backend
from compactnn.nn import to_compact, to_dense
from compactnn.nn.chain import ChainedForward, install_chains, remove_chains

native = pytest.mark.skipif(backend._ext is None, reason="native extension not built")
FORMATS = ["index_map", "csr", "cer", "cser", "ham", "sham", "dense", "lossless_float"]


def shared_mlp(seed: int = 0, sizes=(64, 40, 24, 10), flatten: bool = True) -> nn.Sequential:
    """An MLP with pruned, 8-value weights (every compact format encodes it)."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            w = torch.randint(-4, 4, (b, a)).float() / 8
            w[torch.rand(b, a) < 0.6] = 0
            lin.weight.copy_(w)
        mods.append(lin)
        if i < len(sizes) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods).eval()


def reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module-by-module forward."""
    with torch.no_grad():
        return nn.Sequential.forward(model, x)


@native
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batch", [1, 3, 9, 40])
def test_chain_is_bit_identical_to_the_module_path(fmt, batch):
    cm = to_compact(shared_mlp(), fmt)
    assert isinstance(cm.__dict__.get("forward"), ChainedForward)
    x = torch.randn(batch, 1, 8, 8)
    for name in [*backend.levels(), "numba"]:
        with backend.use(name):
            with torch.no_grad():
                y = cm(x)
            assert y.dtype == torch.float32 and y.shape == (batch, 10)
            assert y.numpy().tobytes() == reference(cm, x).numpy().tobytes(), name


@native
def test_relu_keeps_nan_and_negative_zero_like_torch():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    cm = to_compact(dense, "csr")
    x = torch.tensor([[float("nan"), 0.0, 0.0, 0.0], [-0.0, 0.0, 0.0, 0.0]])
    assert cm(x).numpy().tobytes() == reference(cm, x).numpy().tobytes()


@native
def test_chain_runs_natively_and_only_once_per_call(monkeypatch):
    cm = to_compact(shared_mlp(), "index_map")
    calls = []
    plain = nn.Sequential.forward
    monkeypatch.setattr(nn.Sequential, "forward",
                        lambda self, x: calls.append(1) or plain(self, x))
    cm(torch.randn(2, 64))
    cm(torch.randn(2, 1, 8, 8))
    assert calls == []
    cm(torch.randn(2, 64, dtype=torch.float64))  # not float32: the module path
    cm(torch.randn(64, 2).t())  # not contiguous
    cm(torch.randn(2, 64, requires_grad=True))
    with backend.use("numba"):
        cm(torch.randn(2, 64))
    assert len(calls) == 4


@native
def test_guards_follow_changes_to_the_model():
    cm = to_compact(shared_mlp(), "csr")
    x = torch.randn(2, 64)
    cm(x)
    with torch.no_grad():
        cm[1].bias.add_(1.0)  # in place: the chain reads the same memory
    assert cm(x).numpy().tobytes() == reference(cm, x).numpy().tobytes()
    cm[1].bias = torch.zeros(40)  # a new buffer
    assert cm(x).numpy().tobytes() == reference(cm, x).numpy().tobytes()
    cm[1].bias.data = torch.ones(40)  # new memory under the same tensor
    assert cm(x).numpy().tobytes() == reference(cm, x).numpy().tobytes()
    other = to_compact(shared_mlp(seed=1), "csr")
    cm[3].matrices[0] = other[3].matrices[0]
    assert cm(x).numpy().tobytes() == reference(cm, x).numpy().tobytes()
    cm[3] = other[3]
    assert cm(x).numpy().tobytes() == reference(cm, x).numpy().tobytes()
    cm[4] = nn.Tanh()  # no longer chainable
    assert cm(x).numpy().tobytes() == reference(cm, x).numpy().tobytes()
    cm.append(nn.Softmax(dim=1))
    y = cm(x)
    assert torch.allclose(y.sum(1), torch.ones(2))


@native
def test_hooks_run_when_registered_and_the_chain_returns_after():
    cm = to_compact(shared_mlp(), "index_map")
    x = torch.randn(2, 64)
    seen = []
    h = cm[2].register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    cm(x)
    assert seen == [torch.Size([2, 40])]
    h.remove()
    g = nn.modules.module.register_module_forward_hook(lambda mod, inp, out: seen.append(1))
    try:
        cm(x)
    finally:
        g.remove()
    assert len(seen) > 1
    before = len(seen)
    cm(x)
    assert len(seen) == before and cm.forward._chain not in (None, False)


@native
def test_copies_pickles_and_load_keep_working(tmp_path):
    cm = to_compact(shared_mlp(), "sham")
    x = torch.randn(3, 64)
    want = cm(x).numpy().tobytes()
    for other in (copy.deepcopy(cm), pickle.loads(pickle.dumps(cm))):
        assert other.forward.seq is other
        assert other(x).numpy().tobytes() == want
    path = tmp_path / "m.cnn"
    compactnn.save(cm, path)
    loaded = compactnn.load(path, model=shared_mlp())
    assert isinstance(loaded.__dict__.get("forward"), ChainedForward)
    assert loaded(x).numpy().tobytes() == want
    dense = to_dense(cm)
    assert "forward" not in dense.__dict__
    assert torch.allclose(dense(x), cm(x), atol=1e-5)


def test_install_skips_what_it_cannot_chain():
    assert install_chains(shared_mlp()) == 0  # dense layers
    relu_first = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
    flat2 = nn.Sequential(nn.Flatten(0), nn.Linear(3, 2))
    for model in (relu_first, flat2, nn.Sequential()):
        cm = to_compact(model, "csr")
        assert "forward" not in cm.__dict__
    cm = to_compact(shared_mlp(), "csr")
    remove_chains(cm)
    assert "forward" not in cm.__dict__
    assert install_chains(cm) == 1 and install_chains(cm) == 0


@native
def test_native_chain_checks_its_layers():
    nat = backend._ext
    a = to_compact(nn.Sequential(nn.Linear(5, 4)), "csr")[0].matrices[0].fused_rows(1)
    b = to_compact(nn.Sequential(nn.Linear(3, 2)), "csr")[0].matrices[0].fused_rows(1)
    with pytest.raises(ValueError, match="does not fit"):
        nat.Chain((a, b), (None, None), (True, False), (), (), ())
    with pytest.raises(ValueError, match="one entry per layer"):
        nat.Chain((a,), (), (False,), (), (), ())
    with pytest.raises(ValueError, match="at least 4"):
        nat.Chain((a,), (np.zeros(2, np.float32),), (False,), (), (), ())
    c = nat.Chain((a,), (None,), (False,), (), (), ())
    assert c.widths == (5, 4)
    with pytest.raises(TypeError, match="addresses"):
        c.run(np.zeros(5, np.float32), 1, np.zeros(4, np.float32))


@native
def test_native_call_checks_every_part_of_its_input():
    """``Chain.call``: the product on an exact float32 CPU contiguous tensor of 1 to
    max_rows rows, 2-D or N-D; None (nothing computed) for anything else, or while
    tracing."""
    nat = backend._ext
    lin = to_compact(nn.Sequential(nn.Linear(5, 4)), "csr")[0]
    k, bias = lin.matrices[0].fused_rows(3), lin._bias_array()
    c = nat.Chain((k,), (bias,), (False,), (), (), ())
    x = torch.randn(3, 5)
    assert c.call(x) is None  # set_call not made
    with pytest.raises(TypeError, match="set_call"):
        c.set_call(torch.Tensor, torch.float32, None, 3)
    with pytest.raises(ValueError, match="max_rows"):
        c.set_call(torch.Tensor, torch.float32, torch._C._get_tracing_state, 0)
    c.set_call(torch.Tensor, torch.float32, torch._C._get_tracing_state, 3)
    assert torch.equal(c.call(x), lin.forward(x))
    for x3 in (torch.randn(3, 1, 5), torch.randn(1, 2, 5), torch.randn(1, 1, 1, 1, 1, 1, 1, 5)):
        y3 = c.call(x3)
        assert y3.shape == (*x3.shape[:-1], 4) and torch.equal(y3, lin.forward(x3))
    for bad in (torch.randn(4, 5), torch.randn(2, 2, 5), torch.randn(0, 5),
                torch.randn(1, 1, 1, 1, 1, 1, 1, 1, 5), torch.randn(3, 6),
                torch.randn(3, 5, dtype=torch.float64),
                torch.randn(5, 3).T, torch.randn(15), nn.Parameter(torch.randn(3, 5)),
                np.zeros((3, 5), np.float32), torch.randn(3, 5).to_sparse(), "x"):
        assert c.call(bad) is None
    c.set_call(torch.Tensor, torch.float32, lambda: "tracing", 3)
    assert c.call(x) is None
    c.set_call(torch.Tensor, torch.float32, lambda: 1 / 0, 3)
    with pytest.raises(ZeroDivisionError):
        c.call(x)
    held = {"a": 1}
    g = nat.Chain((k,), (bias,), (False,), ((held, "a", None),), (), ())
    g.set_call(torch.Tensor, torch.float32, torch._C._get_tracing_state, 3)
    assert g.call(x) is None  # a guard fails
