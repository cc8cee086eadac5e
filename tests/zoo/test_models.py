"""Zoo models: shapes, parameter counts, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compactnn import zoo


@pytest.mark.parametrize("name,kw,x_shape,out", [
    ("lenet300", {}, (2, 1, 28, 28), 10),
    ("lenet300", {"in_features": 64}, (2, 1, 8, 8), 10),
    ("lenet5", {}, (2, 1, 28, 28), 10),
    ("vgg_small", {"in_channels": 3}, (2, 3, 32, 32), 10),
    ("vgg_small", {}, (2, 1, 28, 28), 10),
    ("mlp", {}, (2, 10), 1),
])
def test_forward_shapes(name, kw, x_shape, out):
    model = zoo.build(name, **kw)
    assert model(torch.zeros(x_shape)).shape == (x_shape[0], out)
    assert any(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())


def test_parameter_counts_match_the_literature():
    count = lambda m: sum(p.numel() for p in m.parameters() if p.dim() > 1)  # noqa: E731
    assert count(zoo.build("lenet300")) == 784 * 300 + 300 * 100 + 100 * 10
    assert count(zoo.build("lenet5")) == 500 + 25000 + 400000 + 5000


def test_build_errors():
    with pytest.raises(ValueError, match="unknown model"):
        zoo.build("resnet")
    with pytest.raises(ValueError, match="12x12"):
        zoo.build("lenet5", image_size=8)
