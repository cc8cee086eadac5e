"""Training and evaluation loops on any ``torch.utils.data`` input, on any device.

The task follows the targets: integer targets train with cross-entropy and report
accuracy, float targets train with mean squared error and report MSE. Constraints
added by ``compactnn.transforms`` (pruning masks, shared values) are parametrizations
of the layers, so ``fit`` on a constrained model is constraint-keeping fine-tuning:
pruned weights get zero gradient and a shared value gets the sum of the gradients of
the weights that use it. Their dense weights are rebuilt for the backward pass instead of
kept (``compactnn.train.recompute``).

Data: a ``TensorDataset``, a map-style ``Dataset``, an ``IterableDataset`` or a
``DataLoader`` (``compactnn.train.data``). Devices: ``device`` moves the model there
for the loop and back afterwards, and each batch to it; ``autocast`` (``"bf16"``,
``"fp16"``) runs the forward passes under ``torch.autocast`` (``compactnn.train.device``;
fp16 on CUDA trains with a gradient scaler).

Under ``torch.distributed`` (``torchrun``: a default process group of several ranks)
``fit`` is data-parallel: each rank trains on its slice of every global batch inside
``DistributedDataParallel`` (``compactnn.train.ddp``); the batches, their order and the
history are those of one process.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from compactnn.train import ddp
from compactnn.train import device as _dev
from compactnn.train.data import Data, batch_count, check_data, first, in_order, shuffled
from compactnn.train.recompute import rebuild_marked

__all__ = ["fit", "evaluate", "predict", "task_of"]


def task_of(data: Data) -> str:
    """``"classification"`` for integer targets, ``"regression"`` for float targets."""
    y = torch.as_tensor(first(data)[1])
    return "regression" if torch.is_floating_point(y) else "classification"


def _loss_fn(task: str):
    return F.mse_loss if task == "regression" else F.cross_entropy


def fit(model: nn.Module, train: Data, epochs: int = 1, lr: float = 1e-3,
        batch_size: int = 128, seed: int = 0, *, weight_decay: float = 0.0,
        lr_schedule: str = "cosine", val: Data | None = None,
        progress: bool = True, device: str | torch.device | None = None,
        autocast: str | None = None, num_workers: int = 0,
        teacher: nn.Module | None = None, distill: float = 0.5,
        temperature: float = 4.0) -> list[dict[str, float]]:
    """Train ``model`` in place with Adam (AdamW when ``weight_decay`` > 0).

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to logits / predictions.
        train: ``(input, target)`` samples: a ``TensorDataset``, ``Dataset``,
            ``IterableDataset`` or ``DataLoader`` (``compactnn.train.data``).
        epochs, lr, batch_size: the usual; the learning rate follows ``lr_schedule``
            (``"cosine"``: cosine decay to 0 over all steps, or ``"constant"``).
        seed: seeds the shuffling (not the model's initialisation).
        val: if given, evaluated after every epoch.
        progress: show a tqdm bar per epoch.
        device: where to train (``None``: where the model is); the model is back on
            its own device afterwards.
        autocast: ``"bf16"`` / ``"fp16"``: forward passes under ``torch.autocast``.
        num_workers: ``DataLoader`` workers for datasets that are not tensors.
        teacher: if given (classification only), knowledge distillation from it
            (Hinton et al.): the loss is ``(1 - distill)`` times the cross-entropy plus
            ``distill * temperature**2`` times the KL divergence of the model's
            ``softmax(logits / temperature)`` from the teacher's, whose logits come
            from an eval-mode forward pass without gradients on the same batch; the
            teacher is moved to the training device for the loop and back.

    Under ``torch.distributed`` every rank calls ``fit`` with the same arguments and
    trains its slice of each batch (module docstring); the model is the same on every
    rank afterwards.

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
    if teacher is not None and not (0 <= distill <= 1 and temperature > 0):
        raise ValueError(f"need 0 <= distill <= 1 and temperature > 0; got {distill}, "
                         f"{temperature}")
    precision = autocast
    half = _dev.check_autocast(precision) == torch.float16
    check_data(train)
    task = task_of(train)
    if teacher is not None and task != "classification":
        raise ValueError("distillation from a teacher needs classification targets")
    loss_fn = _loss_fn(task)
    if teacher is not None:
        loss_fn = _distilled(loss_fn, teacher, distill, temperature)
    steps_per_epoch = batch_count(train, batch_size)
    if steps_per_epoch is None and lr_schedule == "cosine" and epochs:
        raise ValueError("the cosine schedule needs data with a length; pass "
                         "lr_schedule='constant' for an IterableDataset")
    rank, world = ddp.ranks()
    with _dev.on_device(model, device) as dev, (
            _dev.on_device(teacher, dev) if teacher is not None else contextlib.nullcontext()):
        params = [p for p in model.parameters() if p.requires_grad]
        opt = (torch.optim.AdamW(params, lr, weight_decay=weight_decay) if weight_decay
               else torch.optim.Adam(params, lr))
        if lr_schedule == "cosine":
            total = max(1, epochs * steps_per_epoch)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        scaler = torch.amp.GradScaler(dev.type, enabled=half and dev.type == "cuda")
        gen = torch.Generator().manual_seed(seed)
        history = []
        was_training = model.training
        model.train()
        net = ddp.wrap(model, dev) if world > 1 and epochs else model
        for epoch in range(epochs):
            bar = tqdm(shuffled(train, batch_size, gen, num_workers), total=steps_per_epoch,
                       desc=f"epoch {epoch + 1}/{epochs}", disable=not progress or rank > 0,
                       leave=False)
            total_loss, seen = 0.0, 0
            for b, (xb, yb) in enumerate(bar):
                weight = 1.0
                if world > 1:
                    xb, yb, weight = ddp.share(xb, yb, rank, world)
                xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
                with _dev.autocast(dev, precision), rebuild_marked():
                    loss = (loss_fn(net(xb).float(), yb, xb) if teacher is not None
                            else loss_fn(net(xb).float(), yb))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss * weight).backward()
                scaler.step(opt)
                scaler.update()
                if lr_schedule == "cosine":
                    sched.step()
                if weight:
                    total_loss += loss.item() * len(xb)
                    seen += len(xb)
                if b % 50 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}")
            if world > 1:
                total_loss, seen = ddp.total([total_loss, seen])
                ddp.sync(model)
            record = {"train_loss": total_loss / max(seen, 1)}
            if val is not None:
                record.update({f"val_{k}": v for k, v in evaluate(
                    model, val, autocast=precision, num_workers=num_workers).items()})
                model.train()
            history.append(record)
        model.train(was_training)
    return history


def _distilled(hard, teacher: nn.Module, distill: float, temperature: float):
    """The distillation loss ``(logits, targets, inputs) -> loss`` of ``fit``."""

    def loss(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        was_training = teacher.training
        teacher.eval()
        with torch.no_grad():
            soft = F.softmax(teacher(x).float() / temperature, dim=1)
        teacher.train(was_training)
        kl = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft, reduction="batchmean")
        return (1 - distill) * hard(logits, y) + distill * temperature ** 2 * kl

    return loss


@torch.no_grad()
def _outputs(model: nn.Module, batches, dev: torch.device, precision: str | None,
             to_cpu: bool) -> list[torch.Tensor]:
    """Outputs of ``model`` (already on ``dev``) for each input batch, in eval mode
    with parametrized weights computed once; half-precision outputs as float32."""
    was_training = model.training
    model.eval()
    try:
        outs = []
        with parametrize.cached():
            for xb in batches:
                with _dev.autocast(dev, precision):
                    out = model(xb.to(dev, non_blocking=True))
                if out.dtype in (torch.float16, torch.bfloat16):
                    out = out.float()
                outs.append(out.cpu() if to_cpu else out)
        return outs
    finally:
        model.train(was_training)


def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 2048, *,
            device: str | torch.device | None = None,
            autocast: str | None = None) -> torch.Tensor:
    """Model outputs for ``inputs`` in eval mode (parametrized weights computed once);
    on ``device`` (``None``: where the model is) under ``autocast``, returned on the CPU
    when ``device`` is given."""
    with _dev.on_device(model, device) as dev:
        chunks = (inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size))
        return torch.cat(_outputs(model, chunks, dev, autocast, device is not None))


def evaluate(model: nn.Module, data: Data, batch_size: int = 2048, *,
             device: str | torch.device | None = None, autocast: str | None = None,
             num_workers: int = 0) -> dict[str, float]:
    """Metrics of ``model`` on ``data``: ``{"accuracy", "loss"}`` (accuracy in [0, 1],
    loss = mean cross-entropy) for classification, ``{"mse"}`` for regression; any data
    ``fit`` takes, the same ``device`` / ``autocast``."""
    check_data(data)
    task = task_of(data)
    ys: list[torch.Tensor] = []

    def inputs():
        for xb, yb in in_order(data, batch_size, num_workers):
            ys.append(torch.as_tensor(yb))
            yield xb

    with _dev.on_device(model, device) as dev:
        outs = _outputs(model, inputs(), dev, autocast, device is not None)
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    y = ys[0] if len(ys) == 1 else torch.cat(ys)
    if task == "regression":
        return {"mse": F.mse_loss(out, y).item()}
    return {"accuracy": (out.argmax(1) == y).float().mean().item(),
            "loss": F.cross_entropy(out, y).item()}
