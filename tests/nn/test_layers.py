"""CompactLinear / CompactConv2d agree with nn.Linear / nn.Conv2d on drawn configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from compactnn import formats
from compactnn.nn import CompactConv2d, CompactLinear, to_compact

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def sparse_weights(module: nn.Module, seed: int, sparsity: float) -> None:
    """Prune and share the module's weight like a compressed model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = module.weight
        levels = torch.tensor([-0.5, -0.25, 0.125, 0.75])
        w.copy_(levels[torch.randint(0, 4, w.shape, generator=g)])
        w[torch.rand(w.shape, generator=g) < sparsity] = 0.0


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(
    fmt=st.sampled_from(formats.available()),
    n_in=st.integers(1, 40), n_out=st.integers(1, 40),
    lead=st.sampled_from([(), (0,), (1,), (5,), (2, 3)]),
    bias=st.booleans(), seed=st.integers(0, 2**16), sparsity=st.sampled_from([0.0, 0.7, 1.0]),
)
def test_linear_matches_torch(fmt, n_in, n_out, lead, bias, seed, sparsity):
    torch.manual_seed(seed)
    ref = nn.Linear(n_in, n_out, bias=bias)
    sparse_weights(ref, seed, sparsity)
    layer = to_compact(nn.Sequential(ref), fmt, storage="raw")[0]
    assert isinstance(layer, CompactLinear) and layer.format_id == fmt
    x = torch.randn(*lead, n_in)
    with torch.no_grad():
        close(layer(x), ref(x))


@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["int", "pair", "valid", "same"]))
    if padding == "same":
        stride = (1, 1)
    elif padding == "int":
        padding = draw(st.integers(0, 2))
    elif padding == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = dilation[0] * (kh - 1) + 1 + draw(st.integers(0, 6))
    w = dilation[1] * (kw - 1) + 1 + draw(st.integers(0, 6))
    return dict(in_channels=cin, out_channels=cout, kernel_size=(kh, kw), stride=stride,
                padding=padding, dilation=dilation, groups=groups), (h, w)


@SETTINGS
@given(cfg=conv_configs(), fmt=st.sampled_from(formats.available()), bias=st.booleans(),
       batch=st.sampled_from([None, 1, 3]), seed=st.integers(0, 2**16),
       sparsity=st.sampled_from([0.0, 0.6]))
def test_conv_matches_torch(cfg, fmt, bias, batch, seed, sparsity):
    kw, (h, w) = cfg
    torch.manual_seed(seed)
    ref = nn.Conv2d(**kw, bias=bias)
    sparse_weights(ref, seed, sparsity)
    layer = to_compact(nn.Sequential(ref), fmt, storage="raw")[0]
    assert isinstance(layer, CompactConv2d) and len(layer.matrices) == kw["groups"]
    shape = (kw["in_channels"], h, w) if batch is None else (batch, kw["in_channels"], h, w)
    x = torch.randn(*shape)
    with torch.no_grad():
        close(layer(x), ref(x))


def test_linear_rejects_wrong_input():
    layer = CompactLinear(formats.get("dense").from_dense(np.ones((2, 3), np.float32)))
    with pytest.raises(ValueError, match="last dimension 3"):
        layer(torch.ones(4, 5))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="bias has 3 entries"):
        CompactLinear(formats.get("dense").from_dense(np.ones((2, 3), np.float32)), torch.ones(3))


def test_conv_rejects_bad_configuration():
    M = formats.get("dense").from_dense(np.ones((2, 9), np.float32))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        CompactConv2d([M, M], None, 3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"matrix shape \(2, 9\), expected \(2, 18\)"):
        CompactConv2d([M], None, 2, 2, 3)
    with pytest.raises(ValueError, match="'same' requires stride 1"):
        CompactConv2d([M], None, 1, 2, 3, stride=2, padding="same")
    conv = CompactConv2d([M], None, 1, 2, 3)
    with pytest.raises(ValueError, match=r"expects \(N, 1, H, W\)"):
        conv(torch.ones(1, 2, 5, 5))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(torch.ones(1, 1, 2, 2))


def test_no_gradient_and_float64_input():
    ref = nn.Linear(3, 2)
    layer = to_compact(nn.Sequential(ref), "dense")[0]
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert y.dtype == torch.float32 and not y.requires_grad
    close(y, ref(x.float()).detach())


def test_bias_changes_are_seen():
    import copy

    layer = CompactLinear(formats.get("dense").from_dense(np.eye(3, dtype=np.float32)),
                          torch.zeros(3))
    x = torch.ones(1, 3)
    assert layer(x).tolist() == [[1.0, 1.0, 1.0]]
    layer.load_state_dict({"bias": torch.ones(3)})  # in place
    assert layer(x).tolist() == [[2.0, 2.0, 2.0]]
    layer.bias = torch.full((3,), 5.0)  # replaced
    assert layer(torch.ones(2, 3)).tolist() == [[6.0] * 3] * 2
    twin = copy.deepcopy(layer)
    twin.bias.fill_(7.0)
    assert twin(x).tolist() == [[8.0] * 3] and layer(x).tolist() == [[6.0] * 3]


def test_fast_call_keeps_module_semantics():
    """The direct ``__call__`` and the cached plan: hooks still run, a swapped bias
    storage, another batch size and a pickled copy are all seen."""
    import pickle

    layer = CompactLinear(formats.get("csr").from_dense(np.eye(3, dtype=np.float32)),
                          torch.zeros(3))
    x = torch.ones(2, 3)
    assert layer(x).tolist() == [[1.0] * 3] * 2
    layer.bias.data = torch.ones(3)  # same Parameter object, new storage
    assert layer(x).tolist() == [[2.0] * 3] * 2
    assert layer(torch.ones(4, 3)).tolist() == [[2.0] * 3] * 4
    hook = layer.register_forward_hook(lambda m, i, o: o * 0)
    assert layer(x).tolist() == [[0.0] * 3] * 2
    hook.remove()
    pre = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, i: (i[0] * 3,))
    try:
        assert layer(x).tolist() == [[4.0] * 3] * 2
    finally:
        pre.remove()
    twin = pickle.loads(pickle.dumps(layer))
    assert twin(x).tolist() == [[2.0] * 3] * 2


def test_fast_call_equals_forward_on_every_input_kind():
    """The native fast path and ``forward`` agree bit for bit on 2-D and 3-D inputs,
    alternating batch sizes, inputs that need grad, float64 and non-contiguous inputs,
    and under a global forward hook."""
    rng = np.random.default_rng(0)
    W = rng.integers(-2, 3, (7, 5)).astype(np.float32) / 4
    for fmt in ("csr", "ham", "index_map"):
        layer = CompactLinear(formats.get(fmt).from_dense(W), torch.arange(7.0))
        inputs = [torch.randn(3, 5), torch.randn(2, 4, 5), torch.randn(1, 5),
                  torch.randn(3, 5, requires_grad=True), torch.randn(3, 5, dtype=torch.float64),
                  torch.randn(5, 3).T, torch.randn(3, 5), torch.randn(2, 4, 5)]
        for x in inputs:
            y = layer(x)
            assert not y.requires_grad and y.dtype == torch.float32
            assert torch.equal(y, layer.forward(x))
        seen = []
        hook = torch.nn.modules.module.register_module_forward_hook(
            lambda m, i, o, seen=seen: seen.append(type(m).__name__))
        try:
            assert torch.equal(layer(inputs[0]), layer.forward(inputs[0]))
        finally:
            hook.remove()
        assert seen == ["CompactLinear"]
