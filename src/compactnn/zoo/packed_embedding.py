"""``PackedEmbedding``: an ``nn.Embedding`` of at most 256 distinct values, stored as
a codebook and fixed-width codes packed into bytes (the ``packed_codes`` format), looked
up without decoding the whole table. MiniLM's shared word embeddings use it
(:func:`compactnn.zoo.transformer.pack_embeddings_`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compactnn._validate import integer

__all__ = ["PackedEmbedding", "code_bits"]


def code_bits(num_values: int) -> int:
    """Bits per code for a codebook of ``num_values`` entries (at least 1)."""
    return max(max(num_values - 1, 0).bit_length(), 1)


class PackedEmbedding(nn.Module):
    """``nn.Embedding`` replacement for a table with at most 256 distinct values.

    Buffers: ``codebook`` float32 ``(K,)`` (the distinct values by bit pattern, most
    frequent first) and ``codes`` uint8 ``(num_embeddings, ceil(dim / 8) * bits)``: row
    ``r`` is the bit stream of its ``dim`` codes, ``bits = ceil(log2 K)`` (at least 1)
    bits each, most significant bit first, zero-padded to a multiple of 8 codes (so
    every 8 codes fill exactly ``bits`` bytes). A lookup gathers the requested rows and
    decodes only those, 8 codes per 64-bit word (bit-exactly the shared weights).
    With ``row_scaled=True`` a buffer ``scale`` float16 ``(num_embeddings,)`` multiplies
    each decoded row (``float(scale[r]) * codebook[code]``, one float32 multiply: bit-exactly
    :class:`compactnn.transforms.shared.RowScaledWeights`). Inference only: no gradient
    reaches the codebook.

    >>> W = torch.tensor([[0.5, 0.0, 0.0], [0.0, -1.0, 0.5]])
    >>> emb = PackedEmbedding.from_weight(W)
    >>> emb(torch.tensor([1, 0])).tolist(), emb.bits, emb.nbytes
    ([[0.0, -1.0, 0.5], [0.5, 0.0, 0.0]], 2, 16)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_values: int,
                 padding_idx: int | None = None, row_scaled: bool = False) -> None:
        super().__init__()
        for name, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim),
                        ("num_values", num_values)):
            integer(name, v, 1, numpy=False)
        if num_values > 256:
            raise ValueError(f"a packed embedding holds at most 256 distinct values, "
                             f"got {num_values}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        self.bits = code_bits(num_values)
        self.register_buffer("codebook", torch.zeros(num_values, dtype=torch.float32))
        b = self.bits
        self.register_buffer("codes", torch.zeros(
            num_embeddings, -(-embedding_dim // 8) * b, dtype=torch.uint8))
        self.row_scaled = bool(row_scaled)
        if self.row_scaled:
            self.register_buffer("scale", torch.ones(num_embeddings, dtype=torch.float16))
        self.register_buffer("_byte_shift", torch.arange(8 * (b - 1), -1, -8),
                             persistent=False)
        self.register_buffer("_code_shift", torch.arange(7 * b, -1, -b), persistent=False)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, padding_idx: int | None = None,
                    scale: torch.Tensor | None = None) -> PackedEmbedding:
        """Pack a ``(num_embeddings, dim)`` float32 table with at most 256 distinct values
        (compared by bit pattern, so the lookup is bit-exact); with ``scale``, float16
        ``(num_embeddings,)``, the table is the unscaled one and the lookups return
        ``float(scale[r]) * weight[r]``."""
        from compactnn.coding import frequency_codebook

        W = weight.detach().cpu().to(torch.float32).numpy()
        if W.ndim != 2 or W.size == 0:
            raise ValueError(f"expected a non-empty 2-D embedding table, got shape {W.shape}")
        if not np.isfinite(W).all():
            raise ValueError("the embedding table holds NaN or Inf")
        if scale is not None:
            if (scale.dtype != torch.float16 or scale.shape != W.shape[:1]
                    or not torch.isfinite(scale).all()):
                raise ValueError(f"scale must be {W.shape[0]} finite float16 values, got "
                                 f"{scale.dtype}{list(scale.shape)}")
            scale = scale.detach().cpu()
        omega, sym, _ = frequency_codebook(W)
        if omega.size > 256:
            raise ValueError(f"the embedding table has {omega.size} distinct values; share "
                             "its weights (at most 256 values) before packing")
        out = cls(W.shape[0], W.shape[1], int(omega.size), padding_idx, scale is not None)
        if scale is not None:
            out.scale.copy_(scale)
        codes = np.zeros((W.shape[0], -(-W.shape[1] // 8) * 8), np.uint8)
        codes[:, :W.shape[1]] = sym.reshape(W.shape)
        bits = np.unpackbits(codes[..., None], axis=-1)[..., 8 - out.bits:]
        packed = np.packbits(bits.reshape(W.shape[0], -1), axis=1)
        out.codebook.copy_(torch.from_numpy(omega.copy()))
        out.codes.copy_(torch.from_numpy(packed))
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the codebook, the packed codes and the row scales."""
        scales = self.scale.numel() * 2 if self.row_scaled else 0
        return self.codebook.numel() * 4 + self.codes.numel() + scales

    def _indices(self, rows: torch.Tensor) -> torch.Tensor:
        """The codes of packed ``rows`` (padding codes included), as int64."""
        lead, b = rows.shape[:-1], self.bits
        if b == 8:
            return rows.long()
        words = (rows.reshape(*lead, -1, b).long() << self._byte_shift).sum(-1)
        return ((words.unsqueeze(-1) >> self._code_shift) & ((1 << b) - 1)).reshape(*lead, -1)

    def _decode(self, rows: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        out = self.codebook[self._indices(rows)[..., :self.embedding_dim]]
        return out if scale is None else scale.to(torch.float32).unsqueeze(-1) * out

    def check_state(self) -> None:
        """Validate the stored buffers (``load`` and ``save`` call this): the
        ``packed_codes`` format's ``check()`` (``compactnn.formats.packed_codes``: a
        finite float32 codebook of distinct bit patterns, uint8 codes of the declared
        shape, every code below the codebook size, every padding code 0) and, when
        row-scaled, finite float16 scales, one per row. Raises ``ValueError`` naming the
        first problem, before any lookup can index out of range."""
        from compactnn.formats import get

        if self.row_scaled and (self.scale.dtype != torch.float16
                                or self.scale.shape != (self.num_embeddings,)
                                or not torch.isfinite(self.scale).all()):
            raise ValueError(f"scale must be {self.num_embeddings} finite float16 values")

        get("packed_codes").from_buffers(
            {"codebook": self.codebook.detach().cpu().numpy(),
             "codes": self.codes.detach().cpu().numpy()},
            {"shape": [self.num_embeddings, self.embedding_dim]})

    @property
    def weight(self) -> torch.Tensor:
        """The decoded ``(num_embeddings, dim)`` table (a new tensor, for inspection)."""
        return self._decode(self.codes, self.scale if self.row_scaled else None)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._decode(self.codes[input_ids],
                            self.scale[input_ids] if self.row_scaled else None)

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, values={self.codebook.numel()}, "
                f"bits={self.bits}, row_scaled={self.row_scaled}, nbytes={self.nbytes}")
