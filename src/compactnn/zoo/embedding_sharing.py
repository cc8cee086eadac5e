"""Sharing and packing the word-embedding table of a
:class:`compactnn.zoo.transformer.SentenceEncoder` (``model`` throughout; the functions are
re-exported by that module): the table as the transforms take it
(:func:`word_embeddings`), weight sharing with one codebook or with the rows scaled
first (:func:`share_embeddings_`), and the swap to a
:class:`~compactnn.zoo.packed_embedding.PackedEmbedding` (:func:`pack_embeddings_`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from compactnn.zoo.packed_embedding import PackedEmbedding

if TYPE_CHECKING:
    from compactnn.transforms.shared import RowScaledWeights, SharedWeights

__all__ = ["word_embeddings", "pack_embeddings_", "share_embeddings_"]

_WORD = "bert.embeddings.word_embeddings"


def word_embeddings(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: module}`` of the word-embedding table, in the form the transforms take
    (``compactnn.transforms.prune_layers_`` / ``share_layers_``)."""
    return {_WORD: model.bert.embeddings.word_embeddings}


def pack_embeddings_(model: nn.Module, rows: RowScaledWeights | None = None
                     ) -> PackedEmbedding:
    """Replace the word-embedding table (weight-shared: at most 256 distinct values;
    constraints are baked first) by a :class:`PackedEmbedding`, in place; the model's
    ``zoo_spec`` follows, so a saved file rebuilds it.

    A row-scaled table (:func:`share_embeddings_` with ``row_scaled``) packs as its codes
    and scales, from its parametrization or, once baked (``compress_`` bakes), from
    ``rows``, the parametrization :func:`share_embeddings_` returned; the baked table
    must then equal ``rows``' product bit for bit (``ValueError`` otherwise)."""
    from compactnn.transforms import bake_
    from compactnn.transforms.prune import constraint_of
    from compactnn.transforms.shared import RowScaledWeights

    emb = model.bert.embeddings.word_embeddings
    if isinstance(emb, PackedEmbedding):
        return emb
    con = constraint_of(emb)
    given = not isinstance(con, RowScaledWeights)
    if given:
        bake_([emb])
    rows = rows if given else con
    if rows is None:
        packed = PackedEmbedding.from_weight(emb.weight, emb.padding_idx)
    else:
        with torch.no_grad():
            book = torch.cat([rows.codebook.new_zeros(1), rows.codebook.detach()])
            unscaled = book[rows.assign.long() + 1]
            packed = PackedEmbedding.from_weight(unscaled, emb.padding_idx,
                                                 scale=rows.stored_scale)
            if given and not torch.equal(packed.weight.view(torch.int32),
                                         emb.weight.detach().view(torch.int32)):
                raise ValueError("the embedding table is not the row-scaled sharing given")
    model._set_word_embeddings(packed)
    return packed


@torch.no_grad()
def share_embeddings_(model: nn.Module, k: int, row_scaled: bool = False
                      ) -> SharedWeights:
    """Weight-share the word-embedding table in place (CWS: 1-D k-means with ``k``
    values; the codebook stays learnable). With ``row_scaled``, each row is divided by
    its standard deviation first and the table becomes ``scale[r] * codebook[code]``
    (scales stored as float16)
    (:class:`compactnn.transforms.shared.RowScaledWeights`, scales learnable too): the
    rows of frequent and rare tokens spread differently, and one codebook for the
    normalised rows fits them all better at the same code length. Returns the
    parametrization (pass a row-scaled one to :func:`pack_embeddings_` after baking)."""
    import functools

    from compactnn.transforms import kmeans_1d, share_layers_
    from compactnn.transforms.shared import RowScaledWeights, index_dtype

    layers = word_embeddings(model)
    emb = layers[_WORD]
    if not row_scaled:
        share_layers_(layers, functools.partial(kmeans_1d, k=k))
        return emb.parametrizations.weight[0]
    if parametrize.is_parametrized(emb, "weight"):
        raise ValueError("the word embeddings are already constrained")
    W = emb.weight.detach().to(torch.float32)
    scale = W.std(dim=1)  # in float16's normal range: scales are stored as float16
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).clamp(2.0 ** -14, 6e4)
    scale = scale.to(torch.float16).to(torch.float32)
    unit = (W / scale.unsqueeze(1)).to(torch.float64)
    nonzero = unit != 0
    q = kmeans_1d(unit[nonzero].numpy(), k)
    assign = torch.full(W.shape, -1, dtype=index_dtype(q.codebook.size))
    assign[nonzero] = torch.from_numpy(q.assign).to(assign.dtype)
    book = nn.Parameter(torch.from_numpy(q.codebook.astype(np.float32)))
    con = RowScaledWeights(book, assign, nn.Parameter(scale.clone()))
    parametrize.register_parametrization(emb, "weight", con)
    return con
