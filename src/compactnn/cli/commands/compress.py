"""``compactnn compress``: a recipe (pruning, weight sharing, fine-tuning) applied to a
checkpoint, a Hugging Face folder or ``minilm``, by the input's model kind
(``compactnn.cli.models``)."""

from __future__ import annotations

import argparse

from compactnn.cli.common import (
    add_data,
    add_device,
    add_max_length,
    add_workers,
    check_output,
    count,
    device_of,
    positive_int,
)
from compactnn.cli.registry import Command, register
from compactnn.errors import UserError


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint written by `compactnn train`, a Hugging "
                   "Face model folder (config.json + safetensors + tokenizer files), or minilm "
                   "(the pretrained all-MiniLM-L6-v2, distilled on real text)")
    p.add_argument("--recipe", required=True,
                   help="recipe file (.yaml/.yml/.json) or built-in name (lenet300, demo, minilm)")
    add_data(p, required=False)
    add_workers(p)
    p.add_argument("--embedding-k", type=positive_int, help="minilm: share the word "
                   "embeddings with K values and pack them (default: keep them float32)")
    p.add_argument("--embedding-scaled", action="store_true", help="minilm, with "
                   "--embedding-k: divide each embedding row by its standard deviation "
                   "before sharing and keep one float16 scale per row (better quality for "
                   "0.5%% more bytes at K=15)")
    p.add_argument("--sentences", type=positive_int, default=3000,
                   help="minilm: calibration/distillation samples (real text)")
    add_max_length(p)
    add_device(p)
    p.add_argument("--seed", type=count, default=0, help="Hugging Face models: seeds the "
                   "dropout of distillation (the same seed gives the same file)")
    p.add_argument("-o", "--output", required=True, help="compressed checkpoint to write")
    p.add_argument("--stream", action="store_true", help="Hugging Face causal LM: compress "
                   "one block at a time from its safetensors shards straight into a compact "
                   "file (policy smallest), with memory for about one block")
    p.add_argument("--resume", action="store_true",
                   help="with --stream: continue an interrupted run after its last block")
    p.add_argument("--workers", type=positive_int, default=1, help="with --stream: "
                   "processes that encode a block's layers in parallel (same file)")


def run(a: argparse.Namespace) -> None:
    from compactnn.cli import models
    from compactnn.cli.models.zoo import KIND as ZOO

    check_output(a.output, a.checkpoint, a.recipe)
    a.device = device_of(a)
    if a.workers != 1 and not a.stream:
        raise UserError("--workers needs --stream")
    if a.stream or a.resume:
        from compactnn.cli import streaming

        if not a.stream:
            raise UserError("--resume needs --stream")
        return streaming.compress(a)
    _in_memory(models.named(a.checkpoint) or ZOO, a)


def _in_memory(kind, a: argparse.Namespace) -> None:
    """``kind.compress(a)`` on every rank of a ``torchrun`` run (this process alone
    otherwise): the recipe's calibration, layer solves and fine-tuning are split across
    the ranks, rank 0 writes and prints; the others wait for its outcome and end with
    its error, if any."""
    from compactnn.stream.distributed import world

    with world(a.device) as ranks:
        if ranks.size == 1:
            return kind.compress(a)
        failure = None
        try:
            kind.compress(a)
        except Exception as exc:  # rank 0 writing: every rank ends with its message
            failure = exc
        [message] = ranks.map([(1.0, lambda: _message(failure))])  # rank 0's
        if failure is not None:
            raise failure
        if message is not None:
            raise UserError(f"rank 0 failed: {message}")


def _message(failure: Exception | None) -> str | None:
    if failure is None or isinstance(failure, UserError):
        return failure and str(failure)
    return f"{type(failure).__name__}: {failure}"


register(Command("compress", "apply a compression recipe with fine-tuning",
                 "Prune / weight-share a trained checkpoint with a recipe (YAML/JSON file or "
                 "a built-in name) and fine-tune it. Under `torchrun --nproc_per_node N -m "
                 "compactnn compress ...` the N ranks split the calibration, the layer "
                 "solves and the fine-tuning / distillation batches "
                 "(DistributedDataParallel; gloo on CPU, NCCL with --device cuda); rank 0 "
                 "writes the output.", arguments, run, lean_memory=True))
