"""Devices and autocast in the loops and in compress_ (CPU here; CUDA tests skip
without a GPU)."""

from __future__ import annotations

import pytest
import torch

from compactnn import io, train, zoo
from compactnn.transforms import RecipeError, compress_
from compactnn.transforms.calibrate import gptq_assign, input_moments
from compactnn.transforms.hessian import sparsegpt_prune

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

RECIPE = [{"method": "prune", "p": 60, "criterion": "sparsegpt", "calibrate": 64},
          {"method": "finetune", "epochs": 1, "batch_size": 64, "lr": 1e-3},
          {"method": "cws", "k": 8, "calibrate": 64}]


@pytest.fixture(scope="module")
def digits():
    return zoo.load_dataset("digits")


def _compressed(tmp_path, digits, name, **kw) -> tuple[torch.nn.Module, bytes]:
    torch.manual_seed(0)
    model = zoo.build("lenet300", in_features=64)
    compress_(model, RECIPE, digits[0], **kw)
    path = tmp_path / f"{name}.cnn"
    io.save(model, path)
    return model, path.read_bytes()


def test_cpu_device_gives_the_same_file_bytes(tmp_path, digits):
    _, default = _compressed(tmp_path, digits, "default")
    model, cpu = _compressed(tmp_path, digits, "cpu", device="cpu", autocast="none")
    assert default == cpu
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_bf16_autocast_on_cpu_keeps_the_constraints(tmp_path, digits):
    plain, _ = _compressed(tmp_path, digits, "plain")
    model, _ = _compressed(tmp_path, digits, "bf16", device="cpu", autocast="bf16")
    for layer, ref in zip(model.modules(), plain.modules(), strict=True):
        if isinstance(layer, torch.nn.Linear):
            w = layer.weight.detach()
            assert w.dtype == torch.float32
            assert (w == 0).float().mean() >= 0.6 - 1e-6  # the pruning holds
            assert torch.unique(w[w != 0]).numel() <= 8  # so does the sharing
            same = ((w == 0) == (ref.weight.detach() == 0)).float().mean()
            assert same > 0.8  # nearly the same masks, from moments measured in bf16
    acc = train.evaluate(model, digits[1], autocast="bf16")["accuracy"]
    assert abs(acc - train.evaluate(model, digits[1])["accuracy"]) < 0.05


def test_fit_under_bf16_trains_and_returns_float32(digits):
    torch.manual_seed(0)
    model = zoo.build("lenet300", in_features=64)
    hist = train.fit(model, digits[0], epochs=2, batch_size=64, progress=False,
                     device="cpu", autocast="bf16")
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    out = train.predict(model, digits[1].tensors[0][:5], autocast="bf16")
    assert out.dtype == torch.float32 and out.shape == (5, 10)


def test_moments_under_autocast_stay_float64(digits):
    torch.manual_seed(0)
    model = zoo.build("lenet300", in_features=64)
    layer = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][1]
    x = digits[0].tensors[0][:32]
    exact = input_moments(model, layer, x)
    half = input_moments(model, layer, x, autocast="bf16")
    assert half.dtype == exact.dtype == torch.float64
    assert torch.allclose(half, exact, rtol=0.05, atol=1e-2 * exact.abs().max().item())


@pytest.mark.parametrize("bad, why", [("tpu9", "unknown device"), ("cpu", "autocast")])
def test_bad_device_or_precision_is_refused_before_any_work(digits, bad, why):
    torch.manual_seed(0)
    model = zoo.build("lenet300", in_features=64)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(RecipeError, match=why):
        compress_(model, RECIPE, digits[0], device=bad,
                  autocast="int3" if why == "autocast" else None)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_error(digits):
    model = zoo.build("lenet300", in_features=64)
    with pytest.raises(RecipeError, match="CUDA is not available"):
        compress_(model, RECIPE, digits[0], device="cuda")
    assert train.best_device() == "cpu"


def test_on_device_returns_the_model_home():
    net = torch.nn.Linear(3, 2)
    with train.on_device(net, None) as dev:
        assert dev.type == "cpu"
    with train.on_device(net, "cpu"):
        pass
    assert net.weight.device.type == "cpu"


@CUDA
@pytest.mark.parametrize("precision", [None, "bf16", "fp16"])
def test_compress_on_cuda_keeps_the_constraints_and_ends_on_the_cpu(tmp_path, digits,
                                                                    precision):
    model, _ = _compressed(tmp_path, digits, f"cuda-{precision}", device="cuda",
                           autocast=precision)
    assert all(p.device.type == "cpu" for p in model.parameters())
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            w = layer.weight.detach()
            assert (w == 0).float().mean() >= 0.6 - 1e-6
            assert torch.unique(w[w != 0]).numel() <= 8
    assert train.evaluate(model, digits[1], device="cuda")["accuracy"] > 0.5


@CUDA
def test_solves_on_cuda_match_the_cpu():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g, dtype=torch.float64)
    H = x.T @ x / 256
    w = torch.randn(8, 16, generator=g)
    book = torch.linspace(-2, 2, 7).numpy()
    assert (gptq_assign(w, H, book) == gptq_assign(w, H, book, device="cuda")).mean() > 0.95
    new_cpu, keep_cpu = sparsegpt_prune(w, H, 50)
    new_gpu, keep_gpu = sparsegpt_prune(w, H, 50, device="cuda")
    assert keep_gpu.device.type == new_gpu.device.type == "cpu"
    assert torch.equal(keep_cpu, keep_gpu) and torch.allclose(new_cpu, new_gpu, atol=1e-5)
