"""Reference models for the experiments, built by name with ``build(name, **kw)``.

- ``lenet300``: LeNet-300-100, ``in_features``-300-100-``num_classes`` with ReLU
  (LeCun et al. 1998; the fully connected net of Han et al.'s Deep Compression).
- ``lenet5``: the Caffe variant of LeNet-5 used by Deep Compression: conv 5x5 x20,
  max-pool 2, conv 5x5 x50, max-pool 2, fc 500, fc ``num_classes`` (431k weights on
  28x28 inputs).
- ``vgg_small``: a small VGG-style CNN (3x3 convolutions with batch norm, widths
  32-32-M-64-64-M-128-128-M, global average pooling, fc 256, fc ``num_classes``).
- ``vgg19``: VGG19's conv stack (16 3x3 convolutions with batch norm in the 2-2-4-4-4
  pattern, max-pools between the blocks) scaled by ``width``, and three fully connected
  layers ``hidden``-``hidden``-``num_classes`` with ReLU and dropout, the classifier of
  seed 001's VGG19 experiments (Marinò et al.; 4096 wide there).
- ``mlp``: a plain regression/classification MLP ``in_features``-hidden...-``out_features``.

Every model takes ``(N, C, H, W)`` images (MLPs flatten them) and has only
``nn.Linear`` / ``nn.Conv2d`` layers with weights, so all of them can be compressed.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import nn

from compactnn.errors import UserError

__all__ = ["MODELS", "build", "lenet300", "lenet5", "vgg_small", "vgg19", "mlp"]


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


VGG19_BLOCKS = (2, 2, 4, 4, 4)  # 3x3 convolutions per block; widths 64-128-256-512-512


def vgg19(in_channels: int = 1, num_classes: int = 10, width: float = 0.125,
          hidden: int = 1024, dropout: float = 0.5, image_size: int = 28,
          pool5: bool = False) -> nn.Sequential:
    """VGG19-style CNN: ``features`` (VGG19's 16 convolutions, 3x3 with padding 1, batch
    norm and ReLU, ``64·width``-``128·width``-``256·width``-``512·width``-``512·width``
    channels in blocks of 2-2-4-4-4, a 2x2 max-pool after each block but the last unless
    ``pool5``; pools round up, as Keras' ``padding="same"``: 28-14-7-4-2) and
    ``classifier`` (``fc1``, ``fc2``, ``fc3``: flatten, ``hidden``-``hidden``-
    ``num_classes`` with ReLU and ``dropout``; Linear layers with biases and nothing
    after them, so they hold every parameter they compute with).

    >>> sum(p.numel() for p in vgg19(width=1 / 32, hidden=16).parameters())
    21392
    """
    if not 0 < width <= 1:
        raise ValueError(f"vgg19 width must be in (0, 1], got {width}")
    if not 0 <= dropout < 1:
        raise ValueError(f"vgg19 dropout must be in [0, 1), got {dropout}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c, side = in_channels, image_size
    for b, (n, base) in enumerate(zip(VGG19_BLOCKS, (64, 128, 256, 512, 512), strict=True), 1):
        w = max(1, round(base * width))
        for i in range(1, n + 1):
            layers[f"conv{b}_{i}"] = nn.Conv2d(c, w, 3, padding=1, bias=False)
            layers[f"bn{b}_{i}"] = nn.BatchNorm2d(w)
            layers[f"relu{b}_{i}"] = nn.ReLU()
            c = w
        if b < 5 or pool5:
            layers[f"pool{b}"] = nn.MaxPool2d(2, ceil_mode=True)
            side = math.ceil(side / 2)
    if side < 1 or image_size < 1:
        raise ValueError(f"vgg19 needs images of at least 1x1 pixels, got {image_size}")
    head = OrderedDict([("flatten", nn.Flatten()), ("fc1", nn.Linear(c * side * side, hidden)),
                        ("relu1", nn.ReLU()), ("drop1", nn.Dropout(dropout)),
                        ("fc2", nn.Linear(hidden, hidden)), ("relu2", nn.ReLU()),
                        ("drop2", nn.Dropout(dropout)), ("fc3", nn.Linear(hidden, num_classes))])
    return nn.Sequential(OrderedDict([("features", nn.Sequential(layers)),
                                      ("classifier", nn.Sequential(head))]))


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
    "lenet300": lenet300, "lenet5": lenet5, "vgg_small": vgg_small, "vgg19": vgg19,
    "mlp": mlp,
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
