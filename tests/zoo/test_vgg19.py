"""The ``vgg19`` zoo model: its shape, and seed 001's recipe (``RECIPES["vgg19"]``)
applied to a width-1/32 model through to a file that reloads bit-identically."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from compactnn import load, save, to_compact, zoo
from compactnn.transforms import Recipe, compress_
from compactnn.zoo.models import VGG19_BLOCKS
from compactnn.zoo.presets import RECIPES, model_kwargs


def test_conv_stack_and_classifier():
    model = zoo.build("vgg19", width=1 / 32, hidden=16)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum(VGG19_BLOCKS) == 16
    assert [c.out_channels for c in convs] == [2] * 2 + [4] * 2 + [8] * 4 + [16] * 8
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    fcs = [model.get_submodule(f"classifier.fc{i}") for i in (1, 2, 3)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(16 * 2 * 2, 16), (16, 16),
                                                              (16, 10)]
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("kw,x_shape,flat", [
    ({"pool5": True}, (2, 1, 28, 28), 16),            # 28-14-7-4-2-1
    ({"image_size": 32, "in_channels": 3}, (2, 3, 32, 32), 16 * 4),  # 32-16-8-4-2
    ({"image_size": 20}, (2, 1, 20, 20), 16 * 4),      # 20-10-5-3-2
])
def test_geometry(kw, x_shape, flat):
    model = zoo.build("vgg19", width=1 / 32, hidden=8, **kw)
    assert model.classifier.fc1.in_features == flat
    assert model(torch.zeros(x_shape)).shape == (2, 10)


def test_errors_and_kwargs():
    with pytest.raises(ValueError, match="width"):
        zoo.build("vgg19", width=0)
    with pytest.raises(ValueError, match="dropout"):
        zoo.build("vgg19", dropout=1.0)
    data = TensorDataset(torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 9]))
    assert model_kwargs("vgg19", data) == {"in_channels": 1, "num_classes": 10,
                                           "image_size": 28}


def test_recipe_on_a_tiny_model_and_the_file(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    kw = {"width": 1 / 32, "hidden": 64}
    model = zoo.build("vgg19", **kw)
    recipe = [{**s, "epochs": 1} if s["method"] == "finetune" else s for s in RECIPES["vgg19"]]
    convs = {n: m.weight.detach().clone() for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d)}
    compress_(model, Recipe.from_list(recipe), data)
    model.eval()
    for name, k in (("classifier.fc1", 32), ("classifier.fc2", 32), ("classifier.fc3", 2)):
        w = model.get_submodule(name).weight.detach()
        assert (w != 0).sum() <= round(0.01 * w.numel()) + 1  # 99% pruned per layer
        assert 1 <= torch.unique(w[w != 0]).numel() <= k
    for name, m in model.named_modules():  # the convolutions are dense (fine-tuned only)
        if isinstance(m, nn.Conv2d):
            assert (m.weight != 0).all() and m.weight.shape == convs[name].shape
    path, again = tmp_path / "v.cnn", tmp_path / "w.cnn"
    save(to_compact(model, "smallest", storage="auto"), path, zoo=("vgg19", kw), pack=True)
    back = load(path)
    x = data.tensors[0][:8]
    with torch.no_grad():
        assert torch.equal(back(x).argmax(1), model(x).argmax(1))
    save(back, again, zoo=("vgg19", kw), pack=True)
    assert again.read_bytes() == path.read_bytes()
