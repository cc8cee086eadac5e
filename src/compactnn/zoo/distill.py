"""Distillation of a sentence encoder (:class:`~compactnn.zoo.transformer.SentenceEncoder`):
the one-tensor view ``compactnn.train.fit`` and ``compress_`` feed, the dataset of
teacher embeddings, ``distill_`` and ``compress_minilm_`` (a recipe whose fine-tuning
steps distil).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from compactnn.zoo.transformer import (
    SentenceEncoder,
    encode,
    pack_embeddings_,
    tokenize,
    word_embeddings,
)

__all__ = ["distillation_model", "distillation_dataset", "distill_", "compress_minilm_"]


class _PackedInput(nn.Module):
    """``(batch, 2, length)`` int64 input (ids, attention mask) -> the encoder's embeddings,
    trimmed to the longest sentence of the batch (so ``fit`` can shuffle one tensor).
    With ``dropout=False`` the encoder stays in eval mode when ``fit`` calls ``train()``
    (gradients still flow; only dropout is off)."""

    def __init__(self, encoder: nn.Module, dropout: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = dropout

    def train(self, mode: bool = True) -> _PackedInput:
        super().train(mode)
        if not self.dropout:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = int(x[:, 1].sum(dim=1).max())
        return self.encoder(x[:, 0, :length], x[:, 1, :length])


def distillation_model(student: nn.Module, dropout: bool = False) -> nn.Module:
    """A view of ``student`` (same parameters) that takes the single input tensor of
    :func:`distillation_dataset`, for ``compactnn.train.fit`` / ``compactnn.compress_``
    (its layer names gain the prefix ``encoder.``). **[choice]** By default the student
    trains without dropout, so it sees the same deterministic forward as the teacher
    whose embeddings it matches."""
    return _PackedInput(student, dropout)


def distillation_dataset(model: SentenceEncoder, sentences: Sequence[str],
                         targets: torch.Tensor):
    """``TensorDataset(inputs, targets)`` for distillation: ``inputs`` packs token ids and
    attention mask as ``(n, 2, length)`` int64, ``targets`` are the teacher's unit
    embeddings ``(n, hidden)`` float32 (so the loss is their mean squared error).
    Samples are ordered by token count (training shuffles them; a calibration subset
    taken in order then pads little)."""
    from torch.utils.data import TensorDataset

    if targets.shape != (len(sentences), model.hidden_size):
        raise ValueError(f"teacher embeddings have shape {tuple(targets.shape)}, expected "
                         f"({len(sentences)}, {model.hidden_size})")
    enc = tokenize(model, sentences)
    packed = torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1)
    order = torch.argsort(enc["attention_mask"].sum(dim=1), stable=True)
    return TensorDataset(packed[order], targets.detach().to(torch.float32)[order].clone())


def distill_(student: SentenceEncoder, teacher: SentenceEncoder | torch.Tensor,
             sentences: Sequence[str], *, epochs: int = 1, lr: float = 1e-4,
             batch_size: int = 32, seed: int = 0, progress: bool = False
             ) -> list[dict[str, float]]:
    """Fine-tune ``student`` in place so its embeddings of ``sentences`` match the
    teacher's (mean squared error of the unit embeddings, ``2 (1 - cos) / hidden``).

    The loop is ``compactnn.train.fit`` (Adam, cosine learning-rate decay): pruning masks
    and weight-sharing assignments added by ``compactnn.transforms`` are
    parametrizations, so they are kept, and a shared value learns the summed gradient
    of its weights. ``teacher`` is the original model or its embeddings of ``sentences``
    (``encode(teacher, sentences)``). Returns ``fit``'s per-epoch history.
    """
    from compactnn.train import fit

    targets = teacher if isinstance(teacher, torch.Tensor) else encode(teacher, sentences)
    data = distillation_dataset(student, sentences, targets)
    return fit(distillation_model(student), data, epochs=epochs, lr=lr, batch_size=batch_size,
               seed=seed, progress=progress)


def compress_minilm_(model: SentenceEncoder, recipe: Any, sentences: Sequence[str], *,
                     teacher: SentenceEncoder | torch.Tensor | None = None,
                     embedding_k: int | None = None, progress: bool = False,
                     device=None, autocast: str | None = None):
    """Compress a sentence encoder in place with a ``compactnn.compress_`` recipe whose
    fine-tuning steps distil the teacher's embeddings of ``sentences``.

    Args:
        model: the encoder to compress (e.g. :func:`load_minilm`).
        recipe: any recipe ``compress_`` takes (steps on the 36 ``nn.Linear`` layers,
            named ``encoder.bert.encoder.layer.<i>...``); ``finetune`` steps distil.
        sentences: unlabeled distillation sentences (:mod:`compactnn.zoo.sentences`).
        teacher: the original model or its embeddings of ``sentences``; default: the
            model's own embeddings before compression.
        embedding_k: if given, the word-embedding table is weight-shared first (CWS,
            k-means with ``embedding_k`` values; its codebook is fine-tuned with the
            rest) and packed into a :class:`PackedEmbedding` at the end.
        device, autocast: where calibration and distillation run (``compress_``).

    Returns:
        ``compress_``'s ``CompressionReport`` (the model is baked: plain weights that
        obey the constraints, ready for ``compactnn.to_compact``).
    """
    import functools

    from compactnn.transforms import compress_, kmeans_1d, share_layers_

    if not isinstance(model, SentenceEncoder):
        raise TypeError(f"expected a SentenceEncoder, got {type(model).__name__}")
    if teacher is None:
        teacher = model
    targets = teacher if isinstance(teacher, torch.Tensor) else encode(teacher, sentences)
    data = distillation_dataset(model, sentences, targets)
    if embedding_k is not None:
        share_layers_(word_embeddings(model), functools.partial(kmeans_1d, k=embedding_k))
    report = compress_(distillation_model(model), recipe, data, progress=progress,
                       device=device, autocast=autocast)
    if embedding_k is not None:
        pack_embeddings_(model)
    return report
