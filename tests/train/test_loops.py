"""Training loops on real data (digits, diabetes) and safetensors checkpoints."""

from __future__ import annotations

import pytest
import torch

from compactnn import train, zoo


@pytest.fixture(scope="module")
def digits():
    return zoo.load_dataset("digits")


def test_short_training_on_digits_beats_chance(digits):
    tr, te = digits
    torch.manual_seed(0)
    model = zoo.build("lenet300", in_features=64)
    before = train.evaluate(model, te)["accuracy"]
    hist = train.fit(model, tr, epochs=3, lr=1e-3, batch_size=64, seed=0, val=te,
                     progress=False)
    after = train.evaluate(model, te)
    assert before < 0.3 < 0.9 < after["accuracy"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["val_accuracy"] == after["accuracy"]


def test_regression_on_diabetes_beats_the_mean():
    tr, te = zoo.load_dataset("diabetes")
    torch.manual_seed(0)
    model = zoo.build("mlp", in_features=10, hidden=(32,))
    train.fit(model, tr, epochs=40, lr=3e-3, batch_size=32, progress=False)
    assert set(train.evaluate(model, te)) == {"mse"}
    assert train.evaluate(model, te)["mse"] < 0.7  # 1.0 = predicting the training mean


def test_fit_is_deterministic_and_validates(digits):
    tr, _ = digits
    states = []
    for _ in range(2):
        torch.manual_seed(1)
        model = zoo.build("lenet300", in_features=64)
        train.fit(model, tr, epochs=1, seed=3, progress=False, lr_schedule="constant")
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    with pytest.raises(ValueError, match="lr_schedule"):
        train.fit(model, tr, lr_schedule="step")
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(model, tr, batch_size=0)
    with pytest.raises(TypeError, match="TensorDataset"):
        train.fit(model, [(torch.zeros(3), 1)])


def test_checkpoint_roundtrip(tmp_path, digits):
    torch.manual_seed(0)
    a = zoo.build("lenet5", image_size=16)
    a[0].weight.data[0, 0, 0, 0] = -0.0
    path = tmp_path / "m.safetensors"
    train.save_checkpoint(a, path, {"model": "lenet5", "acc": 0.5})
    b = zoo.build("lenet5", image_size=16)
    meta = train.load_checkpoint(b, path)
    assert meta == {"model": "lenet5", "acc": "0.5"}
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va.view(torch.int32), vb.view(torch.int32))
    with pytest.raises(RuntimeError):
        train.load_checkpoint(zoo.build("lenet300"), path)
