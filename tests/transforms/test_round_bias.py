"""The ``round_bias`` step and ``round_mantissa``: IEEE rounding to fewer mantissa bits
(checked against float16 and bfloat16 conversions), biases frozen on the grid, and
the packed file's float coder storing them smaller."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compactnn import load, save, to_compact, zoo
from compactnn.transforms import RecipeError, RoundBias, compress_
from compactnn.transforms.steps.bias import round_mantissa

floats32 = hnp.arrays(np.float32, st.integers(1, 64),
                      elements=st.floats(width=32, allow_nan=True, allow_infinity=True))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 64),
                  elements=st.floats(-6e4, 6e4, width=32).filter(
                      lambda v: v == 0 or abs(v) >= 2**-14)))
def test_ten_bits_is_float16_rounding(x):
    expect = x.astype(np.float16).astype(np.float32)
    assert round_mantissa(x, 10).tobytes() == expect.tobytes()


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 64), elements=st.floats(
    -float(torch.finfo(torch.bfloat16).max), float(torch.finfo(torch.bfloat16).max),
    width=32)))
def test_seven_bits_is_bfloat16_rounding(x):
    expect = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    assert round_mantissa(x, 7).tobytes() == expect.tobytes()


@settings(max_examples=200, deadline=None)
@given(floats32, st.integers(0, 23))
def test_rounding_is_on_the_grid_near_and_idempotent(x, bits):
    r = round_mantissa(x, bits)
    u = r.view(np.uint32)
    special = ~np.isfinite(x)
    assert r[special].tobytes() == x[special].tobytes()
    finite = ~special
    assert np.isfinite(r[finite]).all()
    assert not (u[finite] & np.uint32((1 << (23 - bits)) - 1)).any()
    err = np.abs(r[finite].astype(np.float64) - x[finite])
    scale = np.maximum(np.abs(x[finite].astype(np.float64)), 2.0 ** -126)  # subnormals
    assert (err <= scale * 2.0 ** -bits).all()
    assert round_mantissa(r, bits).tobytes() == r.tobytes()
    assert round_mantissa(x, 23).tobytes() == x.tobytes()


def test_the_largest_float_does_not_round_to_infinity():
    big = np.array([np.finfo(np.float32).max, -np.finfo(np.float32).max], np.float32)
    r = round_mantissa(big, 2)
    assert np.isfinite(r).all() and (np.abs(r) <= np.finfo(np.float32).max).all()


@pytest.fixture(scope="module")
def digits16():
    tr, _ = zoo.load_dataset("digits")
    x = torch.nn.functional.interpolate(tr.tensors[0], size=16)
    return torch.utils.data.TensorDataset(x[:512], tr.tensors[1][:512])


def test_biases_stay_rounded_through_fine_tuning(digits16):
    torch.manual_seed(0)
    model = zoo.build("lenet5", image_size=16)
    compress_(model, [{"method": "prune", "p": 80}, {"method": "cws", "k": 8},
                      {"method": "round_bias", "bits": 3, "overrides": {"0": {"bits": 5}}}])
    biases = {n: m.bias.detach().clone() for n, m in model.named_modules()
              if getattr(m, "bias", None) is not None}
    weights = {n: m.weight.detach().clone() for n, m in model.named_modules()
               if getattr(m, "bias", None) is not None}
    for n, b in biases.items():
        low = (1 << (23 - (5 if n == "0" else 3))) - 1
        assert not (b.numpy().view(np.uint32) & np.uint32(low)).any()
    compress_(model, [{"method": "finetune", "epochs": 1, "lr": 1e-2}], digits16)
    for n, m in model.named_modules():
        if n in biases:
            assert not m.bias.requires_grad
            assert torch.equal(m.bias, biases[n])
    assert any(not torch.equal(dict(model.named_modules())[n].weight, w)
               for n, w in weights.items())


def test_rounded_biases_make_the_packed_file_smaller(tmp_path):
    torch.manual_seed(0)
    sizes = []
    for recipe in ([{"method": "prune", "p": 90}, {"method": "cws", "k": 4}],
                   [{"method": "prune", "p": 90}, {"method": "cws", "k": 4},
                    {"method": "round_bias", "bits": 4}]):
        model = zoo.build("lenet300", in_features=64)
        with torch.no_grad():
            for m in model.modules():
                if getattr(m, "bias", None) is not None:
                    m.bias.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        compress_(model, recipe)
        path = tmp_path / f"m{len(sizes)}.cnn"
        sizes.append(save(to_compact(model, "smallest", storage="auto"), path, pack=True,
                          zoo=("lenet300", {"in_features": 64, "num_classes": 10})))
        back = load(path)
        for name, m in model.named_modules():
            if getattr(m, "bias", None) is not None:
                assert torch.equal(dict(back.named_modules())[name].bias, m.bias)
    assert sizes[1] < sizes[0] - 4 * (300 + 100 + 10) // 2  # saves over half the biases


def test_bad_round_bias_steps():
    with pytest.raises(RecipeError, match="bits"):
        RoundBias(bits=24)
    with pytest.raises(RecipeError, match="bits"):
        RoundBias(bits=-1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False))
    with pytest.raises(RecipeError, match="has a bias"):
        compress_(net, [{"method": "round_bias"}])
