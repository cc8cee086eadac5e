"""MPDCompress: block-diagonal masks under seeded random permutations (Supic et al.,
arXiv 1805.12085).

Only the paper's abstract was available; this formulation is a **[choice]**
(``docs/architecture/structured.md``):

- ``BlockMask((m, n), N, seed)``: rows and columns are permuted by seeded random
  permutations and split into ``N`` parts as evenly as ``numpy.array_split`` does
  (uneven splits allowed); ``M[i, j] = 1`` iff row ``i`` and column ``j`` fall in the
  same part, i.e. ``M = P · blockdiag(1 .. 1) · Q``. The layout is
  ``compactnn.formats.blockdiag.seeded_layout``, so a seed is all a file stores.
- Masked training: ``block_mask_`` makes the weight ``where(M, W, 0)`` (a
  ``Masked`` parametrization, like pruning), so masked weights are exactly +0.0 and
  get no gradient; ``compactnn.transforms.prune.bake_`` makes it permanent. A
  ``Conv2d`` is masked by channel groups: ``M[o, c]`` over (out, in) channels,
  broadcast over the kernel window.
- Inference: ``to_block_diagonal_`` replaces each masked layer by a
  ``BlockDiagLinear`` / ``BlockDiagConv2d``: gather the input by ``Q``, one batched
  product (``torch.bmm`` / a grouped convolution), scatter by ``P``. Where only
  element-wise (or channel-wise) modules sit between two such layers, the scatter of
  the first and the gather of the second are fused into one gather.
- Composition: masks come first; ``prune_`` intersects its mask with the block mask
  and ``share_weights_`` keeps the zeros, so the blocks of a pruned and weight-shared
  layer can be stored in any registered format (``CompactBlocks``, the registered
  format ``compact_blocks`` of ``compactnn.formats.compact_blocks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from compactnn.formats.blockdiag import BlockDiag, seeded_layout
from compactnn.formats.compact_blocks import CompactBlocks
from compactnn.formats.permseq import _check_seed
from compactnn.transforms.prune import Masked, constraint_of, effective_weight, layers_of

__all__ = [
    "BlockMask",
    "BlockMasked",
    "MPDConfig",
    "block_mask_",
    "mpd_",
    "BlockDiagLinear",
    "BlockDiagConv2d",
    "to_block_diagonal_",
    "fuse_permutations_",
    "CompactBlocks",
    "mask_shape",
    "blockdiag_matrix",
]


@dataclass(frozen=True)
class BlockMask:
    """Seeded N-block mask of an (m, n) matrix (out x in features, or channels)."""

    shape: tuple[int, int]
    blocks: int
    seed: int

    def __post_init__(self) -> None:
        m, n = self.shape
        _check_seed(self.seed)
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int):
            raise ValueError(f"blocks must be an integer, got {self.blocks!r}")
        if not 1 <= self.blocks <= max(m, n, 1):
            raise ValueError(f"blocks must be in [1, {max(m, n, 1)}] for shape {self.shape}, "
                             f"got {self.blocks}")

    @cached_property
    def layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, row_ptr, col_ptr)`` of the seeded layout."""
        return seeded_layout(self.shape, self.blocks, self.seed)

    def row_blocks(self) -> np.ndarray:
        """Block of every row (m,)."""
        rows, _, row_ptr, _ = self.layout
        out = np.empty(rows.size, np.int64)
        out[rows] = np.repeat(np.arange(self.blocks), np.diff(row_ptr))
        return out

    def col_blocks(self) -> np.ndarray:
        """Block of every column (n,)."""
        _, cols, _, col_ptr = self.layout
        out = np.empty(cols.size, np.int64)
        out[cols] = np.repeat(np.arange(self.blocks), np.diff(col_ptr))
        return out

    def dense(self) -> np.ndarray:
        """The mask as a boolean (m, n) array."""
        return self.row_blocks()[:, None] == self.col_blocks()[None, :]

    @property
    def density(self) -> float:
        """Fraction of kept entries (about 1/N)."""
        m, n = self.shape
        _, _, rp, cp = self.layout
        return float(np.dot(np.diff(rp), np.diff(cp))) / (m * n) if m * n else 0.0


class BlockMasked(Masked):
    """The ``Masked`` parametrization of a block mask (``spec`` says which)."""

    def __init__(self, mask: torch.Tensor, spec: BlockMask) -> None:
        super().__init__(mask)
        self.spec = spec


def mask_shape(layer: nn.Module) -> tuple[int, int]:
    """The (rows, columns) a block mask of ``layer`` covers: (out, in) features of an
    ``nn.Linear``, (out, in) channels of an ``nn.Conv2d`` (``groups=1`` only)."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError("block masks need a Conv2d with groups=1")
        return layer.out_channels, layer.in_channels
    if isinstance(layer, nn.Linear):
        return layer.out_features, layer.in_features
    raise TypeError(f"block masks apply to nn.Linear and nn.Conv2d, got {type(layer).__name__}")


@torch.no_grad()
def block_mask_(layer: nn.Module, blocks: int, seed: int, rescale: bool = False) -> BlockMask:
    """Mask ``layer``'s weight with a seeded ``blocks``-block mask (in place); the spec
    is kept as ``layer.block_mask`` (it survives ``bake_``).

    ``rescale`` multiplies the weights by ``density ** -0.5`` (about ``sqrt(N)``), so a
    freshly initialised layer keeps the output scale of its default initialisation with
    the smaller fan-in (use it when training from scratch, not on trained weights).
    """
    spec = BlockMask(mask_shape(layer), blocks, seed)
    if constraint_of(layer) is not None or hasattr(layer, "block_mask"):
        raise ValueError("apply block masks before pruning or weight sharing, once per layer")
    if rescale and spec.density > 0:
        layer.weight.mul_(spec.density**-0.5)
    mask = torch.from_numpy(spec.dense()).to(layer.weight.device)
    mask = mask.reshape(mask.shape + (1,) * (layer.weight.dim() - 2)).expand_as(layer.weight)
    parametrize.register_parametrization(layer, "weight", BlockMasked(mask.clone(), spec))
    layer.block_mask = spec
    return spec


@dataclass(frozen=True)
class MPDConfig:
    """``blocks`` N per layer; layer ``i`` (in module order) gets seed ``seed + i``.
    ``last_dense`` leaves the last compressible layer unmasked; ``rescale_init``: see
    ``block_mask_(rescale=...)``."""

    blocks: int
    seed: int = 0
    last_dense: bool = False
    rescale_init: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or self.blocks < 1:
            raise ValueError(f"blocks must be a positive integer, got {self.blocks!r}")
        _check_seed(self.seed)


def mpd_(model: nn.Module, config: MPDConfig) -> dict[str, BlockMask]:
    """Block-mask every ``nn.Linear`` / ``nn.Conv2d`` of ``model`` in place; returns the
    masks by layer name. Train (or fine-tune) afterwards with ``compactnn.train.fit``.

    >>> net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
    >>> masks = mpd_(net, MPDConfig(blocks=2))
    >>> round(masks["0"].density, 2), int((net[0].weight != 0).sum())
    (0.5, 24)
    """
    items = list(layers_of(model).items())
    if config.last_dense:
        items = items[:-1]
    return {name: block_mask_(layer, config.blocks, config.seed + i, config.rescale_init)
            for i, (name, layer) in enumerate(items)}


# ---- inference layers -------------------------------------------------------------------

_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
                nn.Hardtanh, nn.Identity, nn.Dropout)
_CHANNELWISE = _ELEMENTWISE + (nn.MaxPool2d, nn.AvgPool2d, nn.Dropout2d)


def _spec_of(layer: nn.Module) -> BlockMask:
    spec = getattr(layer, "block_mask", None)
    if not isinstance(spec, BlockMask):
        raise ValueError(f"{type(layer).__name__} carries no block mask; call block_mask_ first")
    return spec


class _BlockDiagBase(nn.Module):
    """Padded blocks and the gather indices shared by the linear and conv layers.

    Blocks are zero-padded to the largest block (R rows, C columns); rows outside
    every block form one extra block without columns (they compute only their bias).
    ``in_index`` (N C,) picks each block column from the input (index ``n``: an
    appended zero); the product gives a block-order output (N R,); ``out_index`` (m,)
    gathers the original order from it, ``bias_order`` (N R,) is the original row of
    each block-order position (``m`` for padding).
    """

    def _setup(self, shape: tuple[int, int], layout, W: np.ndarray, bias: torch.Tensor | None,
               seed: int | None, blocks: int) -> np.ndarray:
        m, n = shape
        rows, cols, rp, cp = (np.asarray(a, np.int64) for a in layout)
        row_sets = [rows[rp[b] : rp[b + 1]] for b in range(rp.size - 1)]
        col_sets = [cols[cp[b] : cp[b + 1]] for b in range(rp.size - 1)]
        if rp[-1] < m:
            row_sets.append(rows[rp[-1] :])
            col_sets.append(np.zeros(0, np.int64))
        N = len(row_sets)
        R = max((r.size for r in row_sets), default=0)
        C = max((c.size for c in col_sets), default=0)
        data = np.zeros((N, R, C) + W.shape[2:], np.float32)
        in_index = np.full((N, C), n, np.int64)
        order = np.full(N * R, m, np.int64)
        for b, (rs, cs) in enumerate(zip(row_sets, col_sets, strict=True)):
            data[b, : rs.size, : cs.size] = W[np.ix_(rs, cs)]
            in_index[b, : cs.size] = cs
            order[b * R : b * R + rs.size] = rs
        out_index = np.empty(m, np.int64)
        valid = order < m
        out_index[order[valid]] = np.flatnonzero(valid)
        self.shape = (m, n)
        self.num_blocks, self.block_rows, self.block_cols = N, R, C
        self._layout = (rows, cols, rp, cp)
        self._seed, self._blocks = seed, blocks
        self.bias = None if bias is None else nn.Parameter(bias.detach().to("cpu", torch.float32))
        self.register_buffer("in_index", torch.from_numpy(in_index.reshape(-1)), persistent=False)
        self.register_buffer("out_index", torch.from_numpy(out_index), persistent=False)
        self.register_buffer("bias_order", torch.from_numpy(order), persistent=False)
        self.pad_in = bool((in_index == n).any())
        self.fused_out = False
        return data

    def _block_bias(self) -> torch.Tensor | None:
        """Bias in block order (N R,), 0 on padding."""
        if self.bias is None:
            return None
        return F.pad(self.bias, (0, 1))[self.bias_order]

    @torch.no_grad()
    def _dense(self, blocks: torch.Tensor) -> np.ndarray:
        """Dense (m, n, ...) weight from the padded blocks (N, R, C, ...)."""
        m, n = self.shape
        rows, cols, rp, cp = self._layout
        out = np.zeros((m, n) + tuple(blocks.shape[3:]), np.float32)
        data = blocks.detach().cpu().numpy()
        for b in range(rp.size - 1):
            rs, cs = rows[rp[b] : rp[b + 1]], cols[cp[b] : cp[b + 1]]
            out[np.ix_(rs, cs)] = data[b, : rs.size, : cs.size]
        return out

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, blocks={self.num_blocks}x({self.block_rows}, "
                f"{self.block_cols}), seed={self._seed}, fused_out={self.fused_out}")


class BlockDiagLinear(_BlockDiagBase):
    """``y = P · blockdiag(W_1 .. W_N) · Q x + b`` with one ``torch.bmm``.

    ``weight`` (N, R, C) holds the blocks, zero-padded to the largest block; the
    padding gets zero gradient (padded inputs are zero, padded outputs unused), so the
    layer can also be fine-tuned in block form.
    """

    def __init__(self, matrix: BlockDiag, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(matrix, BlockDiag):
            raise TypeError(f"expected a BlockDiag matrix, got {type(matrix).__name__}")
        data = self._setup(matrix.shape, matrix.layout(), matrix.to_dense(), bias,
                           matrix.seed, matrix.blocks)
        self.weight = nn.Parameter(torch.from_numpy(data))
        self.out_features, self.in_features = matrix.shape

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> BlockDiagLinear:
        """From a block-masked ``nn.Linear`` (masked or baked): seeded layout."""
        spec = _spec_of(linear)
        W = effective_weight(linear).cpu().numpy()
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(BlockDiag.from_masked(W, spec.blocks, spec.seed), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        if self.pad_in:
            x2 = F.pad(x2, (0, 1))
        B, N, R, C = x2.shape[0], self.num_blocks, self.block_rows, self.block_cols
        xg = x2.index_select(1, self.in_index).view(B, N, C).transpose(0, 1)
        y = torch.bmm(xg, self.weight.transpose(1, 2)).transpose(0, 1).reshape(B, N * R)
        bias = self._block_bias()
        if bias is not None:
            y = y + bias
        if not self.fused_out:
            y = y.index_select(1, self.out_index)
        return y.reshape(*lead, y.shape[-1])

    def dense_weight(self) -> torch.Tensor:
        """The (out, in) weight as a dense tensor."""
        return torch.from_numpy(self._dense(self.weight))

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (original row order)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.dense_weight())
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def to_blockdiag(self) -> BlockDiag:
        """The weight as a ``blockdiag`` matrix (only the seed and blocks when the layout
        is seeded)."""
        W = self._dense(self.weight)
        if self._seed is not None:
            return BlockDiag.from_masked(W, self._blocks, self._seed)
        return BlockDiag.from_layout(W, *self._layout)


class BlockDiagConv2d(_BlockDiagBase):
    """Block-masked ``Conv2d``: gather input channels by Q, one grouped convolution
    (``groups = N``), gather output channels by P."""

    def __init__(self, conv: nn.Conv2d, spec: BlockMask) -> None:
        super().__init__()
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            raise TypeError("expected an nn.Conv2d with groups=1")
        if conv.padding_mode != "zeros":
            raise ValueError("BlockDiagConv2d needs padding_mode='zeros', "
                             f"got {conv.padding_mode!r}")
        W = effective_weight(conv).cpu().numpy().reshape(conv.weight.shape)
        if spec.shape != (conv.out_channels, conv.in_channels):
            raise ValueError(f"mask shape {spec.shape} does not fit {conv}")
        if np.any(W.view(np.uint32)[~spec.dense()] != 0):
            raise ValueError("conv weight has entries outside the block mask that are not +0.0")
        data = self._setup(spec.shape, spec.layout, W, conv.bias, spec.seed, spec.blocks)
        N, R, C = data.shape[:3]
        self.weight = nn.Parameter(torch.from_numpy(data.reshape((N * R, C) + W.shape[2:])))
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.kernel_size = conv.kernel_size
        self.out_channels, self.in_channels = spec.shape

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> BlockDiagConv2d:
        """From a block-masked ``nn.Conv2d`` (masked or baked)."""
        return cls(conv, _spec_of(conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_in:
            x = F.pad(x, (0, 0, 0, 0, 0, 1))
        xg = x.index_select(-3, self.in_index)
        y = F.conv2d(xg, self.weight, self._block_bias(), self.stride, self.padding,
                     self.dilation, groups=self.num_blocks)
        return y if self.fused_out else y.index_select(-3, self.out_index)

    def dense_weight(self) -> torch.Tensor:
        """The (out, in, kh, kw) weight as a dense tensor."""
        N, R = self.num_blocks, self.block_rows
        return torch.from_numpy(self._dense(self.weight.reshape(N, R, *self.weight.shape[1:])))

    def to_conv(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing the same function (original channel order)."""
        out = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                        self.padding, self.dilation, bias=self.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.dense_weight())
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def to_blockdiag(self) -> BlockDiag:
        """The flattened (out, in*kh*kw) weight as a ``blockdiag`` matrix: the channel
        layout expanded to kernel positions, stored explicitly."""
        W = self.dense_weight().numpy()
        out_ch, in_ch = self.shape
        k = int(np.prod(W.shape[2:]))
        rows, cols, rp, cp = self._layout
        flat_cols = (cols[:, None] * k + np.arange(k)).reshape(-1)
        return BlockDiag.from_layout(W.reshape(out_ch, in_ch * k), rows, flat_cols, rp, cp * k)


def blockdiag_matrix(layer: nn.Module) -> BlockDiag:
    """The weight of a block-diagonal layer, or of a block-masked (or baked)
    ``nn.Linear`` / ``nn.Conv2d``, as a ``blockdiag`` matrix in its ``(out, in*kh*kw)``
    view: seed only for linear layers, the channel layout expanded to kernel positions
    for convolutions. ``ValueError`` if an entry outside the blocks is not +0.0."""
    if isinstance(layer, _BlockDiagBase):
        return layer.to_blockdiag()
    spec = _spec_of(layer)
    if isinstance(layer, nn.Conv2d):
        return BlockDiagConv2d(layer, spec).to_blockdiag()
    return BlockDiag.from_masked(effective_weight(layer).cpu().numpy(), spec.blocks, spec.seed)


def to_block_diagonal_(model: nn.Module, fuse: bool = True) -> dict[str, nn.Module]:
    """Replace every block-masked ``nn.Linear`` / ``nn.Conv2d`` of ``model`` (masked or
    baked) by its block-diagonal layer, in place; then, with ``fuse``, fuse the
    permutations of consecutive ones (``fuse_permutations_``). Returns the new layers."""
    done: dict[str, nn.Module] = {}
    for name, layer in list(layers_of(model).items()):
        if not hasattr(layer, "block_mask"):
            continue
        new = (BlockDiagConv2d.from_conv(layer) if isinstance(layer, nn.Conv2d)
               else BlockDiagLinear.from_linear(layer))
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
        done[name] = new
    if fuse:
        fuse_permutations_(model)
    return done


@torch.no_grad()
def fuse_permutations_(model: nn.Module) -> int:
    """Inside every ``nn.Sequential`` of ``model``, where a block-diagonal layer is
    followed (through element-wise modules only; for convolutions also channel-wise
    pooling) by another of the same kind, let the first emit its block-order output and
    the second gather straight from it: one gather instead of a scatter and a gather.
    Returns the number of fused pairs."""
    fused = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        prev: _BlockDiagBase | None = None
        for mod in seq:
            if isinstance(mod, _BlockDiagBase):
                if prev is not None and type(prev) is type(mod) and not prev.fused_out:
                    _fuse(prev, mod)
                    fused += 1
                prev = mod
            elif prev is not None and not isinstance(
                    mod, _CHANNELWISE if isinstance(prev, BlockDiagConv2d) else _ELEMENTWISE):
                prev = None
    return fused


def _fuse(a: _BlockDiagBase, b: _BlockDiagBase) -> None:
    if a.shape[0] != b.shape[1] or a.shape[0] == 0:
        raise ValueError(f"cannot chain a {a.shape} layer into a {b.shape} layer")
    width = a.num_blocks * a.block_rows  # a's block-order output; index ``width``: zero
    src = b.in_index
    zero = src == b.shape[1]
    b.in_index = torch.where(zero, torch.full_like(src, width),
                             a.out_index[src.clamp(max=a.shape[0] - 1)])
    b.pad_in = bool((b.in_index == width).any())
    a.fused_out = True
