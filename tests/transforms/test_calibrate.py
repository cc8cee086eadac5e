"""GPTQ calibration: input moments, error-compensated assignments, recipe field."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from compactnn.transforms import RecipeError, compress_, share_layers_
from compactnn.transforms.calibrate import gptq_assign, gram_into, input_moments, same_input
from compactnn.transforms.quantize import kmeans_1d


def correlated(n: int, d: int, seed: int) -> torch.Tensor:
    """Inputs whose features are strongly correlated (a low-rank mix plus noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 3, generator=g, dtype=torch.float64)
    mix = torch.randn(3, d, generator=g, dtype=torch.float64)
    return base @ mix + 0.1 * torch.randn(n, d, generator=g, dtype=torch.float64)


def output_error(W: torch.Tensor, Wq: torch.Tensor, X: torch.Tensor) -> float:
    return float(((X @ (W - Wq).T) ** 2).sum())


def nearest_assign(W: torch.Tensor, book: np.ndarray) -> np.ndarray:
    mids = (book[1:] + book[:-1]) / 2
    return np.where(W.numpy() != 0, np.searchsorted(mids, W.numpy()), -1)


def decode(book: np.ndarray, assign: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([[0.0], book.astype(np.float64)])[assign + 1])


@given(out=st.integers(1, 12), d=st.integers(1, 40), k=st.integers(1, 8),
       zero_frac=st.floats(0, 1), zero=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_assignments_index_the_codebook_and_keep_zeros(out, d, k, zero_frac, zero, seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, d, generator=g)
    W[torch.rand(out, d, generator=g) < zero_frac] = 0
    book = np.sort(np.random.default_rng(seed).normal(size=k)).astype(np.float32)
    book = np.unique(book)
    X = correlated(64, d, seed)
    a = gptq_assign(W, X.T @ X / 64, book, zero=zero)
    assert a.shape == (out, d) and a.dtype == np.int8  # the smallest type for k < 127
    assert (a[W.numpy() == 0] == -1).all()  # pruned weights stay zero
    if not zero:
        assert ((a == -1) == (W.numpy() == 0)).all()
    assert a.max(initial=-1) < book.size


def test_zero_is_a_value_when_allowed():
    W = torch.tensor([[0.02, -0.9, 0.45, -0.03]])
    book = np.array([-1.0, 0.5], np.float32)
    H = torch.eye(4, dtype=torch.float64)  # no correlation: plain nearest values
    assert gptq_assign(W, H, book).tolist() == [[1, 0, 1, 1]]
    assert gptq_assign(W, H, book, zero=True).tolist() == [[-1, 0, 1, -1]]
    both = np.array([-1.0, 0.0, 0.5], np.float32)  # 0 in the codebook already
    assert gptq_assign(W, H, both, zero=True).tolist() == [[1, 0, 2, 1]]


def test_uncorrelated_inputs_give_nearest_values():
    torch.manual_seed(0)
    W = torch.randn(16, 24)
    book = kmeans_1d(W.double().reshape(-1).numpy(), 6).codebook
    H = torch.diag(torch.rand(24, dtype=torch.float64) + 0.5)  # no correlation: no compensation
    assert (gptq_assign(W, H, book) == nearest_assign(W, book)).all()


@pytest.mark.parametrize("seed", range(5))
def test_compensation_lowers_the_output_error(seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(32, 48, generator=g, dtype=torch.float64)
    W[torch.rand(32, 48, generator=g) < 0.3] = 0  # pruned weights stay zero
    X = correlated(500, 48, seed)
    book = kmeans_1d(W[W != 0].numpy(), 4).codebook
    gptq = gptq_assign(W, X.T @ X / 500, book, damp=0.01)
    assert ((gptq == -1) == (W.numpy() == 0)).all()
    err_gptq = output_error(W, decode(book, gptq), X)
    err_near = output_error(W, decode(book, nearest_assign(W, book)), X)
    assert err_gptq < 0.5 * err_near


def test_gptq_checks_its_arguments():
    W = torch.ones(2, 3)
    with pytest.raises(ValueError, match="moments must be"):
        gptq_assign(W, torch.eye(2), np.array([1.0]))
    with pytest.raises(ValueError, match="damp"):
        gptq_assign(W, torch.eye(3), np.array([1.0]), damp=0)
    with pytest.raises(ValueError, match="codebook"):
        gptq_assign(W, torch.eye(3), np.array([], np.float32))


def test_linear_moments_are_the_input_second_moments():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.Linear(3, 2))
    calls = []
    model[3].register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(50, 5)
    H = input_moments(model, model[2], x, batch_size=16)
    hidden = torch.relu(model[0](x)).double()
    torch.testing.assert_close(H, hidden.T @ hidden / 50)
    assert not calls  # the forward pass stopped at the calibrated layer
    assert model.training  # the model's mode is restored


def test_linear_moments_count_every_position():
    layer = nn.Linear(4, 2)
    x = torch.randn(3, 5, 4)
    flat = x.reshape(-1, 4).double()
    torch.testing.assert_close(input_moments(layer, layer, x), flat.T @ flat / 15)


def test_conv_moments_use_the_im2col_columns():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    x = torch.randn(4, 2, 9, 9)
    cols = F.unfold(x, 3, padding=1, stride=2).transpose(1, 2).reshape(-1, 18).double()
    torch.testing.assert_close(input_moments(conv, conv, x), cols.T @ cols / cols.shape[0])
    grouped = nn.Conv2d(2, 2, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        input_moments(grouped, grouped, x)


def test_moments_need_the_layer_in_the_forward_pass():
    model, other = nn.Linear(4, 2), nn.Linear(4, 2)
    with pytest.raises(ValueError, match="not called"):
        input_moments(model, other, torch.randn(3, 4))
    with pytest.raises(ValueError, match="at least one"):
        input_moments(model, model, torch.randn(0, 4))


def test_share_weights_with_moments_uses_only_codebook_values():
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    with torch.no_grad():
        layer.weight[:, :5] = 0
    X = correlated(200, 20, 0)
    books = share_layers_({"l": layer}, functools.partial(kmeans_1d, k=4),
                           moments=lambda name: X.T @ X / 200)
    W = layer.weight.detach()
    assert (W[:, :5] == 0).all()
    assert set(W[:, 5:].reshape(-1).tolist()) <= set(books["l"].detach().tolist())


def regression_task(seed: int = 0) -> tuple[nn.Module, TensorDataset]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))
    x = correlated(400, 16, seed).float()
    return model, TensorDataset(x, model(x).detach())


def test_recipe_calibration_keeps_the_outputs_closer():
    errors = {}
    for calibrate in (0, 200):
        model, data = regression_task()
        compress_(model, [{"method": "cws", "k": 4, "calibrate": calibrate}], data)
        x, y = data.tensors
        errors[calibrate] = float(((model(x) - y) ** 2).mean().detach())
    assert errors[200] < 0.5 * errors[0]


def test_recipe_calibration_needs_train_data():
    model, _ = regression_task()
    with pytest.raises(RecipeError, match="calibrates"):
        compress_(model, [{"method": "uq", "k": 4, "calibrate": 10}])
    for bad in ({"calibrate": -1}, {"calibrate": 1.5}, {"damp": 0}, {"damp": True}):
        with pytest.raises(RecipeError):
            compress_(model, [{"method": "cws", "k": 4, **bad}])


def test_recipe_calibrates_an_overridden_layer_alone():
    errors = {}
    for overrides in ({}, {"2": {"calibrate": 200}}):
        model, data = regression_task()
        report = compress_(model, [{"method": "cws", "k": 4, "overrides": overrides}], data)
        assert [s.distinct for s in report.layers] == [4, 4]
        x, y = data.tensors
        errors[bool(overrides)] = float(((model(x) - y) ** 2).mean().detach())
    assert errors[True] < errors[False]


def test_calibration_progress_bar_counts_layers(capsys):
    model, data = regression_task()
    compress_(model, [{"method": "uq", "k": 4, "calibrate": 50}], data, progress=True)
    err = capsys.readouterr().err
    assert "uq: GPTQ calibration" in err and "2/2" in err


def test_uq_keeps_its_zero_level_under_calibration():
    for calibrate in (0, 200):
        model, data = regression_task()
        report = compress_(model, [{"method": "uq", "k": 2, "calibrate": calibrate}], data)
        assert all(s.sparsity > 0.05 for s in report.layers), calibrate


def test_recipe_rejects_a_conv_it_cannot_calibrate_before_any_work():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 1))
    data = TensorDataset(torch.randn(8, 2, 3, 3), torch.randn(8, 1))
    before = model[2].weight.detach().clone()
    with pytest.raises(RecipeError, match="layer '0': calibration supports Conv2d"):
        compress_(model, [{"method": "cws", "k": 2, "layers": ["2"]},
                          {"method": "cws", "k": 2, "calibrate": 8}], data)
    assert torch.equal(model[2].weight, before)


class Attention(nn.Module):
    """Query, key and value read one tensor; the output layer reads their sum."""

    def __init__(self, split: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v, self.o = (nn.Linear(6, 6) for _ in range(4))
        self.split = split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(x)
        k_in = h.clone() if self.split else h
        return self.o(self.q(h) * self.k(k_in) + self.v(h))


def test_same_input_finds_query_key_value():
    model = Attention()
    x = correlated(16, 6, 0).float()
    others = {"k": model.k, "v": model.v, "o": model.o}
    assert same_input(model, model.q, others, x) == ["k", "v"]
    assert same_input(model, model.v, others, x) == []  # o reads another tensor
    split = Attention(split=True)  # k reads a copy: stops the search (conservative)
    assert same_input(split, split.q, {"k": split.k, "v": split.v}, x) == []


def test_reused_moments_give_the_same_assignments(monkeypatch):
    from compactnn.transforms import calibrate

    x = correlated(64, 6, 1).float()
    data = TensorDataset(x, Attention()(x).detach())
    runs, weights = [], []
    for reuse in (True, False):
        if not reuse:
            monkeypatch.setattr(calibrate, "same_input", lambda *a: [])
        model = Attention()
        calls: list[int] = []

        def counted(*args, _calls=calls, **kwargs):
            _calls.append(1)
            return input_moments(*args, **kwargs)

        monkeypatch.setattr(calibrate, "input_moments", counted)
        compress_(model, [{"method": "cws", "k": 3, "calibrate": 64}], data)
        runs.append(len(calls))
        weights.append([m.weight.detach().clone() for m in (model.q, model.k, model.v, model.o)])
    assert runs == [2, 4]  # q (reused for k and v) and o, against one pass per layer
    for a, b in zip(*weights, strict=True):
        assert torch.equal(a, b)


def test_assignment_type_grows_with_the_codebook():
    """int8 up to 126 values, int16 beyond: the same indices as int64 would hold."""
    W = torch.linspace(-1, 1, 600).reshape(3, 200)
    for k, dtype in ((126, np.int8), (127, np.int16), (300, np.int16)):
        book = np.linspace(-1, 1, k).astype(np.float32)
        a = gptq_assign(W, torch.eye(200), book)
        assert a.dtype == dtype and a.max() == k - 1 and a.min() == 0


@pytest.mark.parametrize(("rows", "n", "block"), [(50, 7, 3), (97, 40, 16), (300, 260, 256),
                                                 (1, 5, 2), (64, 8, 8)])
def test_gram_by_tiles_is_the_widened_product(rows, n, block):
    """The tiles give the float64 product up to the order of its sums (the same bits
    wherever the BLAS sums each entry in one order, as on the machine it was written
    on), exactly symmetric, and the same bits every time."""
    torch.manual_seed(rows + n)
    cols = torch.randn(rows, n)
    cols[cols < -1] = 0  # exact zeros, as after a ReLU
    wide = cols.double()
    out = torch.full((n, n), float("nan"), dtype=torch.float64)
    assert gram_into(out, cols, block) is out
    torch.testing.assert_close(out, wide.T @ wide, rtol=1e-12, atol=1e-12)
    assert torch.equal(out, out.T)
    assert torch.equal(gram_into(torch.empty_like(out), cols, block), out)


def test_moments_of_several_batches_add_in_batch_order():
    """Three batches (the last partial): the sums added in order, as ``0 + s0 + s1 + s2``."""
    torch.manual_seed(1)
    layer = nn.Linear(6, 2)
    x = torch.randn(40, 6)
    total = torch.zeros(6, 6, dtype=torch.float64)
    for b in range(3):
        part = x[b * 16:(b + 1) * 16].double()
        total += part.T @ part
    assert torch.equal(input_moments(layer, layer, x, batch_size=16), total / 40)
    assert torch.equal(input_moments(layer, layer, x[:16], batch_size=16),
                       (0 + x[:16].double().T @ x[:16].double()) / 16)


def test_one_process_batch_sums_start_from_zero():
    """``0 + s0 + s1``: the first sum is written into the result (no second buffer with
    one batch) and a -0.0 in it becomes +0.0, as added to zeros."""
    from compactnn.transforms import parallel

    like = torch.empty(3, dtype=torch.float64)
    seen = []

    def fn(b, out):
        seen.append(out is like)
        return out.copy_(torch.tensor([-0.0, 0.5, float(b)]))

    one = parallel.current().sum_batches(1, like, fn)
    assert one is like and seen == [True]
    assert one.tolist() == [0.0, 0.5, 0.0] and not torch.signbit(one[0])
    seen.clear()
    two = parallel.current().sum_batches(2, like, fn)
    assert seen == [True, False] and two.tolist() == [0.0, 1.0, 1.0]
    assert not torch.signbit(two[0])
    assert parallel.current().sum_batches(0, like, fn).tolist() == [0.0] * 3
