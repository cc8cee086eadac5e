"""Training and evaluation loops on in-memory ``TensorDataset`` s.

The task follows the targets: integer targets train with cross-entropy and report
accuracy, float targets train with mean squared error and report MSE. Constraints
added by ``compactnn.transforms`` (pruning masks, shared values) are parametrizations
of the layers, so ``fit`` on a constrained model is constraint-keeping fine-tuning:
pruned weights get zero gradient and a shared value gets the sum of the gradients of
the weights that use it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

__all__ = ["fit", "evaluate", "predict", "task_of"]


def task_of(data: TensorDataset) -> str:
    """``"classification"`` for integer targets, ``"regression"`` for float targets."""
    y = data.tensors[1]
    return "regression" if torch.is_floating_point(y) else "classification"


def _tensors(data: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, TensorDataset) or len(data.tensors) != 2:
        raise TypeError(f"expected a TensorDataset of (inputs, targets), got {type(data).__name__}")
    return data.tensors


def _loss_fn(data: TensorDataset):
    return F.mse_loss if task_of(data) == "regression" else F.cross_entropy


def fit(model: nn.Module, train: TensorDataset, epochs: int = 1, lr: float = 1e-3,
        batch_size: int = 128, seed: int = 0, *, weight_decay: float = 0.0,
        lr_schedule: str = "cosine", val: TensorDataset | None = None,
        progress: bool = True) -> list[dict[str, float]]:
    """Train ``model`` in place with Adam (AdamW when ``weight_decay`` > 0).

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits / predictions.
        train: ``TensorDataset(inputs, targets)``.
        epochs, lr, batch_size: the usual; the learning rate follows ``lr_schedule``
            (``"cosine"``: cosine decay to 0 over all steps, or ``"constant"``).
        seed: seeds the shuffling (not the model's initialisation).
        val: if given, evaluated after every epoch.
        progress: show a tqdm bar per epoch.

    Returns:
        One dict per epoch: ``train_loss`` (mean over the epoch) and ``val_*`` metrics.

    >>> from compactnn import zoo
    >>> train, test = zoo.load_dataset("digits")
    >>> _ = torch.manual_seed(0); net = zoo.build("lenet300", in_features=64)
    >>> hist = fit(net, train, epochs=3, batch_size=64, progress=False)
    >>> evaluate(net, test)["accuracy"] > 0.9
    True
    """
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {epochs}, "
                         f"{batch_size}, {lr}")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
    x, y = _tensors(train)
    loss_fn = _loss_fn(train)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.AdamW(params, lr, weight_decay=weight_decay) if weight_decay
           else torch.optim.Adam(params, lr))
    n = len(x)
    steps_per_epoch = math.ceil(n / batch_size)
    total = max(1, epochs * steps_per_epoch)
    if lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    gen = torch.Generator().manual_seed(seed)
    history = []
    was_training = model.training
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False)
        total_loss = 0.0
        for b in bar:
            idx = order[b * batch_size:(b + 1) * batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if lr_schedule == "cosine":
                sched.step()
            total_loss += loss.item() * len(idx)
            if b % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        record = {"train_loss": total_loss / n}
        if val is not None:
            record.update({f"val_{k}": v for k, v in evaluate(model, val).items()})
            model.train()
        history.append(record)
    model.train(was_training)
    return history


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Model outputs for ``inputs`` in eval mode (parametrized weights computed once)."""
    was_training = model.training
    model.eval()
    try:
        with parametrize.cached():
            return torch.cat([model(inputs[i:i + batch_size])
                              for i in range(0, len(inputs), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, data: TensorDataset, batch_size: int = 2048) -> dict[str, float]:
    """Metrics of ``model`` on ``data``: ``{"accuracy", "loss"}`` (accuracy in [0, 1],
    loss = mean cross-entropy) for classification, ``{"mse"}`` for regression."""
    x, y = _tensors(data)
    out = predict(model, x, batch_size)
    if task_of(data) == "regression":
        return {"mse": F.mse_loss(out, y).item()}
    return {"accuracy": (out.argmax(1) == y).float().mean().item(),
            "loss": F.cross_entropy(out, y).item()}
