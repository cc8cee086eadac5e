"""Knowledge distillation in ``fit`` (``teacher``) and the ``finetune`` step's
``distill`` (the teacher is the model as ``compress_`` received it)."""

from __future__ import annotations

import copy

import pytest
import torch

from compactnn import train, zoo
from compactnn.train import loops
from compactnn.transforms import FineTune, RecipeError, compress_
from compactnn.transforms import compress as compress_module


@pytest.fixture(scope="module")
def digits():
    return zoo.load_dataset("digits")


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(0)
    model = zoo.build("lenet300", in_features=64)
    train.fit(model, digits[0], epochs=4, lr=1e-3, batch_size=64, progress=False)
    return model.eval()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_no_distill_weight_is_plain_training(digits, teacher):
    runs = []
    for t in (None, teacher):
        torch.manual_seed(1)
        model = zoo.build("lenet300", in_features=64)
        train.fit(model, digits[0], epochs=1, progress=False, teacher=t, distill=0.0)
        runs.append(_state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_the_loss_is_hintons():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    teacher = torch.nn.Linear(5, 3)
    student = torch.randn(16, 3)
    loss = loops._distilled(torch.nn.functional.cross_entropy, teacher, 0.25, 2.0)
    with torch.no_grad():
        p = torch.softmax(teacher(x) / 2.0, 1)
    kl = (p * (p.log() - torch.log_softmax(student / 2.0, 1))).sum(1).mean()
    expect = 0.75 * torch.nn.functional.cross_entropy(student, y) + 0.25 * 4.0 * kl
    torch.testing.assert_close(loss(student, y, x), expect)
    with torch.no_grad():  # the student that is its teacher: only the hard part is left
        same = loss(teacher(x), y, x)
    torch.testing.assert_close(same, 0.75 * torch.nn.functional.cross_entropy(teacher(x), y))


def test_the_soft_targets_teach_without_the_labels(digits, teacher):
    tr, te = digits
    x, y = tr.tensors
    wrong = torch.utils.data.TensorDataset(x, y[torch.randperm(len(y),
                                                generator=torch.Generator().manual_seed(0))])
    accs = []
    for t in (None, teacher):
        torch.manual_seed(2)
        student = zoo.build("lenet300", in_features=64)
        train.fit(student, wrong, epochs=4, lr=1e-3, batch_size=64, progress=False,
                  teacher=t, distill=1.0)
        accs.append(train.evaluate(student, te)["accuracy"])
    assert accs[0] < 0.3 < 0.85 < accs[1]


def test_fit_refuses_bad_distillation(digits, teacher):
    with pytest.raises(ValueError, match="distill"):
        train.fit(copy.deepcopy(teacher), digits[0], teacher=teacher, distill=1.5)
    with pytest.raises(ValueError, match="temperature"):
        train.fit(copy.deepcopy(teacher), digits[0], teacher=teacher, temperature=0)
    reg, _ = zoo.load_dataset("diabetes")
    with pytest.raises(ValueError, match="classification"):
        train.fit(zoo.build("mlp", in_features=10), reg, teacher=zoo.build("mlp", in_features=10))


def _shifted(data):
    x, y = data.tensors
    return torch.utils.data.TensorDataset(x, (y + 1) % 10)


def test_finetune_distills_from_the_model_compress_received(digits, teacher, monkeypatch):
    taken = []
    original = compress_module._teacher
    monkeypatch.setattr(compress_module, "_teacher",
                        lambda m: taken.append(_state(m)) or original(m))
    tr, te = digits
    accs = []
    for distill in (0.0, 1.0):  # on wrong labels only the teacher knows the classes
        model = copy.deepcopy(teacher)
        compress_(model, [{"method": "finetune", "epochs": 3, "lr": 3e-3, "batch_size": 32,
                           "distill": distill}], _shifted(tr))
        accs.append(train.evaluate(model, te)["accuracy"])
    assert accs[0] < 0.2 < 0.85 < accs[1]
    assert len(taken) == 1
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in taken[0].items())
    # a pruning step's own fine-tuning distils too
    compress_(copy.deepcopy(teacher), [{"method": "prune", "p": 80, "schedule": [50],
                                        "finetune": {"epochs": 1, "distill": 0.5,
                                                     "temperature": 2.0}}], tr)
    assert len(taken) == 2


@pytest.mark.parametrize("fields, match", [({"distill": 1.2}, "distill"),
                                           ({"distill": -0.1}, "distill"),
                                           ({"temperature": 0}, "temperature")])
def test_bad_distill_fields_are_recipe_errors(fields, match):
    with pytest.raises(RecipeError, match=match):
        FineTune(**fields)
