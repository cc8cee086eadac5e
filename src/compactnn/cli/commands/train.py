"""``compactnn train``: train a zoo model on a dataset and save a checkpoint."""

from __future__ import annotations

import argparse
import os

from compactnn.cli.common import (
    add_data,
    add_device,
    add_workers,
    check_output,
    count,
    device_of,
    fmt_metrics,
    positive_float,
    positive_int,
)
from compactnn.cli.registry import Command, register


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="zoo model (lenet300, lenet5, vgg_small, vgg19, mlp)")
    add_data(p, required=False)
    add_workers(p)
    p.add_argument("--epochs", type=count, default=10)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--seed", type=int, default=0)
    add_device(p)
    p.add_argument("-o", "--output", required=True, help="checkpoint to write (.safetensors)")


def run(a: argparse.Namespace) -> None:
    import torch

    from compactnn import train, zoo
    from compactnn.cli.models.zoo import dataset
    from compactnn.zoo.checkpoint import save_checkpoint
    from compactnn.zoo.presets import model_kwargs

    check_output(a.output)
    device = device_of(a)
    tr, te = dataset(a.dataset, a.data)  # a named dataset, or an image folder / .npz
    kwargs = model_kwargs(a.model, tr)
    torch.manual_seed(a.seed)
    model = zoo.build(a.model, **kwargs)
    train.fit(model, tr, a.epochs, a.lr, a.batch_size, a.seed, progress=True, device=device,
              autocast=a.autocast, num_workers=a.num_workers)
    metrics = train.evaluate(model, te, device=device, autocast=a.autocast,
                             num_workers=a.num_workers)
    save_checkpoint(model, a.output, a.model, kwargs, dataset=a.dataset, metrics=metrics)
    print(f"trained {a.model} on {a.dataset or a.data}: " + fmt_metrics(metrics))
    print(f"wrote {a.output} ({os.path.getsize(a.output)} bytes)")


register(Command("train", "train a zoo model on a dataset",
                 "Train a zoo model on a dataset and save a checkpoint.", arguments, run))
