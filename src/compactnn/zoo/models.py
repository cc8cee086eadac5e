"""Reference models for the experiments, built by name with ``build(name, **kw)``.

- ``lenet300``: LeNet-300-100, ``in_features``-300-100-``num_classes`` with ReLU
  (LeCun et al. 1998; the fully connected net of Han et al.'s Deep Compression).
- ``lenet5``: the Caffe variant of LeNet-5 used by Deep Compression: conv 5x5 x20,
  max-pool 2, conv 5x5 x50, max-pool 2, fc 500, fc ``num_classes`` (431k weights on
  28x28 inputs).
- ``vgg_small``: a small VGG-style CNN (3x3 convolutions with batch norm, widths
  32-32-M-64-64-M-128-128-M, global average pooling, fc 256, fc ``num_classes``).
- ``mlp``: a plain regression/classification MLP ``in_features``-hidden...-``out_features``.

Every model takes ``(N, C, H, W)`` images (MLPs flatten them) and has only
``nn.Linear`` / ``nn.Conv2d`` layers with weights, so all of them can be compressed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from compactnn.errors import UserError

__all__ = ["MODELS", "build", "lenet300", "lenet5", "vgg_small", "mlp"]


def lenet300(in_features: int = 784, num_classes: int = 10) -> nn.Sequential:
    """LeNet-300-100: ``in_features``-300-100-``num_classes`` fully connected, ReLU."""
    return mlp(in_features, (300, 100), num_classes)


def lenet5(in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> nn.Sequential:
    """Caffe LeNet-5 (conv20-pool-conv50-pool-fc500-fc``num_classes``)."""
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"lenet5 needs images of at least 12x12 pixels, got {image_size}")
    return nn.Sequential(
        nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * side * side, 500), nn.ReLU(),
        nn.Linear(500, num_classes),
    )


def vgg_small(in_channels: int = 1, num_classes: int = 10,
              widths: Sequence[int | str] = (32, 32, "M", 64, 64, "M", 128, 128, "M"),
              hidden: int = 256) -> nn.Sequential:
    """Small VGG-style CNN: 3x3 conv + batch norm + ReLU blocks, ``"M"`` = max-pool 2."""
    layers: list[nn.Module] = []
    c = in_channels
    for w in widths:
        if w == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, int(w), 3, padding=1, bias=False), nn.BatchNorm2d(int(w)),
                       nn.ReLU()]
            c = int(w)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, hidden), nn.ReLU(),
               nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


def mlp(in_features: int = 10, hidden: Sequence[int] = (64, 64),
        out_features: int = 1) -> nn.Sequential:
    """Fully connected ReLU MLP; flattens its input first."""
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [in_features, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], out_features))
    return nn.Sequential(*layers)


def _minilm(**kwargs) -> nn.Module:
    """The all-MiniLM-L6-v2 sentence encoder (``compactnn.zoo.transformer``; fresh weights,
    text inputs): lets ``compactnn.load`` rebuild a saved MiniLM without a skeleton."""
    from compactnn.zoo.transformer import minilm

    return minilm(**kwargs)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": lenet300, "lenet5": lenet5, "vgg_small": vgg_small, "mlp": mlp,
    "minilm": _minilm,
}


def build(name: str, **kwargs) -> nn.Module:
    """Build a zoo model by name; ``kwargs`` go to its constructor.

    >>> sum(p.numel() for p in build("lenet300").parameters())
    266610
    """
    try:
        ctor = MODELS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None
    return ctor(**kwargs)
