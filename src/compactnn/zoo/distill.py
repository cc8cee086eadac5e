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

from compactnn._validate import positive
from compactnn.zoo.transformer import (
    SentenceEncoder,
    encode,
    pack_embeddings_,
    share_embeddings_,
    tokenize,
)

__all__ = ["HIDDEN", "RELATIONAL", "distillation_model", "distillation_dataset", "distill_",
           "compress_minilm_"]

# default weights of the hidden-state and relational distillation terms
HIDDEN = 0.0
RELATIONAL = 0.0


class _PackedInput(nn.Module):
    """``(batch, 2, length)`` int64 input (ids, attention mask) -> the encoder's embeddings,
    trimmed to the longest sentence of the batch (so ``fit`` can shuffle one tensor).
    With ``dropout=False`` the encoder stays in eval mode when ``fit`` calls ``train()``
    (gradients still flow; only dropout is off).

    With a teacher model and a non-zero ``hidden`` or ``relational`` weight, the
    training-mode output gains one column: the square root of the sample's extra loss
    (:func:`distillation_model`), so ``fit``'s squared error against a zero target
    column adds exactly that loss. The teacher is held outside the module tree: its
    layers are no part of the student's names, parameters or recipes."""

    def __init__(self, encoder: nn.Module, dropout: bool = False,
                 teacher: SentenceEncoder | None = None, hidden: float = 0.0,
                 relational: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = dropout
        self._teacher = (teacher,) if teacher is not None else ()
        self.hidden = float(positive("hidden", hidden, zero=True))
        self.relational = float(positive("relational", relational, zero=True))

    @property
    def extra_terms(self) -> bool:
        """Whether training adds the hidden-state / relational terms (an extra column)."""
        return bool(self._teacher) and bool(self.hidden or self.relational)

    def train(self, mode: bool = True) -> _PackedInput:
        super().train(mode)
        if not self.dropout:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = int(x[:, 1].sum(dim=1).max())
        ids, mask = x[:, 0, :length], x[:, 1, :length]
        if not (self.training and self.extra_terms):
            return self.encoder(ids, mask)
        teacher = self._teacher[0]
        if next(teacher.parameters()).device != ids.device:
            teacher.to(ids.device)
        emb, states = self.encoder.embed(ids, mask, hidden_states=self.hidden > 0)
        with torch.no_grad():
            teacher.eval()
            t_emb, t_states = teacher.embed(ids, mask, hidden_states=self.hidden > 0)
        extra = emb.new_zeros(len(emb))
        if self.hidden:
            m = mask.unsqueeze(-1).to(emb.dtype)
            rel = [((s - t).square() * m).sum((1, 2)) / (t.square() * m).sum((1, 2))
                   for s, t in zip(states, t_states, strict=True)]
            extra = extra + self.hidden * torch.stack(rel).mean(0)
        if self.relational:
            gap = emb @ emb.T - t_emb @ t_emb.T
            extra = extra + self.relational * gap.square().sum(1)
        return torch.cat([emb, (extra + 1e-12).sqrt().unsqueeze(1)], dim=1)


def distillation_model(student: nn.Module, dropout: bool = False,
                       teacher: SentenceEncoder | None = None, hidden: float = 0.0,
                       relational: float = 0.0) -> nn.Module:
    """A view of ``student`` (same parameters) that takes the single input tensor of
    :func:`distillation_dataset`, for ``compactnn.train.fit`` / ``compactnn.compress_``
    (its layer names gain the prefix ``encoder.``). **[choice]** By default the student
    trains without dropout, so it sees the same deterministic forward as the teacher
    whose embeddings it matches.

    With a ``teacher`` model, training adds per sample ``hidden`` times the relative
    squared error of the token states after the embeddings and after every
    transformer layer (``sum |h_s - h_t|^2 / sum |h_t|^2`` over the sample's tokens,
    the mean over layers) and ``relational`` times the squared error of its row of the
    batch's cosine-similarity matrix (``sum_j (s_i.s_j - t_i.t_j)^2``); the teacher runs
    on each batch (no grad). The dataset then needs ``extra_column=True``.

    Under ``torch.distributed`` (``fit`` on several ranks, each on a slice of every
    batch) the relational term is refused: it compares the samples of a whole batch."""
    from compactnn.train.ddp import ranks

    if relational and ranks()[1] > 1:
        raise ValueError("the relational distillation term is not supported under "
                         "torch.distributed (it compares a whole batch; each rank has a "
                         "slice)")
    return _PackedInput(student, dropout, teacher, hidden, relational)


def distillation_dataset(model: SentenceEncoder, sentences: Sequence[str],
                         targets: torch.Tensor, extra_column: bool = False):
    """``TensorDataset(inputs, targets)`` for distillation: ``inputs`` packs token ids and
    attention mask as ``(n, 2, length)`` int64, ``targets`` are the teacher's unit
    embeddings ``(n, hidden)`` float32 (so the loss is their mean squared error), with
    a zero column appended if ``extra_column`` (for a :func:`distillation_model` with
    hidden-state or relational terms). Samples are ordered by token count (training
    shuffles them; a calibration subset taken in order then pads little)."""
    from torch.utils.data import TensorDataset

    if targets.shape != (len(sentences), model.hidden_size):
        raise ValueError(f"teacher embeddings have shape {tuple(targets.shape)}, expected "
                         f"({len(sentences)}, {model.hidden_size})")
    enc = tokenize(model, sentences)
    packed = torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1)
    order = torch.argsort(enc["attention_mask"].sum(dim=1), stable=True)
    targets = targets.detach().to(torch.float32)
    if extra_column:
        targets = torch.cat([targets, targets.new_zeros(len(targets), 1)], dim=1)
    return TensorDataset(packed[order], targets[order].clone())


def _teacher_model(teacher: Any, hidden: float, relational: float) -> SentenceEncoder | None:
    if isinstance(teacher, SentenceEncoder):
        return teacher
    if hidden or relational:
        raise ValueError("hidden-state and relational terms need the teacher model, not "
                         "its embeddings")
    return None


def distill_(student: SentenceEncoder, teacher: SentenceEncoder | torch.Tensor,
             sentences: Sequence[str], *, epochs: int = 1, lr: float = 1e-4,
             batch_size: int = 32, seed: int = 0, progress: bool = False,
             hidden: float = HIDDEN, relational: float = RELATIONAL
             ) -> list[dict[str, float]]:
    """Fine-tune ``student`` in place so its embeddings of ``sentences`` match the
    teacher's (mean squared error of the unit embeddings, ``2 (1 - cos) / hidden``,
    plus, with a teacher model, the ``hidden`` and ``relational`` terms of
    :func:`distillation_model`).

    The loop is ``compactnn.train.fit`` (Adam, cosine learning-rate decay): pruning masks
    and weight-sharing assignments added by ``compactnn.transforms`` are
    parametrizations, so they are kept, and a shared value learns the summed gradient
    of its weights. ``teacher`` is the original model or its embeddings of ``sentences``
    (``encode(teacher, sentences)``; then ``hidden`` and ``relational`` must be 0).
    Returns ``fit``'s per-epoch history.
    """
    from compactnn.train import fit

    model = _teacher_model(teacher, hidden, relational)
    targets = teacher if isinstance(teacher, torch.Tensor) else encode(teacher, sentences)
    view = distillation_model(student, teacher=model, hidden=hidden, relational=relational)
    data = distillation_dataset(student, sentences, targets, view.extra_terms)
    return fit(view, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
               progress=progress)


def compress_minilm_(model: SentenceEncoder, recipe: Any, sentences: Sequence[str], *,
                     teacher: SentenceEncoder | torch.Tensor | None = None,
                     embedding_k: int | None = None, embedding_scaled: bool = False,
                     progress: bool = False,
                     hidden: float = HIDDEN, relational: float = RELATIONAL,
                     device=None, autocast: str | None = None):
    """Compress a sentence encoder in place with a ``compactnn.compress_`` recipe whose
    fine-tuning steps distil the teacher's embeddings of ``sentences``.

    Args:
        model: the encoder to compress (e.g. :func:`load_minilm`).
        recipe: any recipe ``compress_`` takes (steps on the 36 ``nn.Linear`` layers,
            named ``encoder.bert.encoder.layer.<i>...``); ``finetune`` steps distil.
        sentences: unlabeled distillation sentences (:mod:`compactnn.zoo.texts`).
        teacher: the original model or its embeddings of ``sentences``; default: a
            copy of the model before compression.
        embedding_k: if given, the word-embedding table is weight-shared first (CWS,
            k-means with ``embedding_k`` values; its codebook is fine-tuned with the
            rest) and packed into a :class:`PackedEmbedding` at the end.
        embedding_scaled: share the table's rows after dividing each by its standard
            deviation, kept as one learnable scale per row
            (:func:`compactnn.zoo.transformer.share_embeddings_`).
        hidden, relational: weights of the hidden-state and relational terms of the
            distillation loss (:func:`distillation_model`; need a teacher model).
        device, autocast: where calibration and distillation run (``compress_``).

    Returns:
        ``compress_``'s ``CompressionReport`` (the model is baked: plain weights that
        obey the constraints, ready for ``compactnn.to_compact``).
    """
    import copy

    from compactnn.transforms import compress_

    if not isinstance(model, SentenceEncoder):
        raise TypeError(f"expected a SentenceEncoder, got {type(model).__name__}")
    if embedding_scaled and embedding_k is None:
        raise ValueError("embedding_scaled needs embedding_k")
    if teacher is None:
        teacher = copy.deepcopy(model) if hidden or relational else model
    teacher_model = _teacher_model(teacher, hidden, relational)
    targets = teacher if isinstance(teacher, torch.Tensor) else encode(teacher, sentences)
    view = distillation_model(model, teacher=teacher_model, hidden=hidden,
                              relational=relational)
    data = distillation_dataset(model, sentences, targets, view.extra_terms)
    if embedding_k is not None:
        shared = share_embeddings_(model, embedding_k, embedding_scaled)
    report = compress_(view, recipe, data, progress=progress, device=device,
                       autocast=autocast)
    if embedding_k is not None:
        pack_embeddings_(model, shared if embedding_scaled else None)
    return report
