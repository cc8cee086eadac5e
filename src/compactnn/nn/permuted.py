"""The permuted-feature layer ``PermutedLinear``: every row of its weight is a
permutation of one of a few shared base sequences (Nagaraju & Chandrachoodan, IET CDT
2023). ``compactnn.transforms.permute_`` puts such layers into a model.

Only the paper's abstract was available; this formulation is a **[choice]**
(``docs/architecture/structured.md``):

- ``PermutedLinear`` has ``G`` learnable base sequences ``base`` (G, n); row ``i``
  is ``base[g(i)]`` permuted by ``pi_i``: ``W[i, pi_i[k]] = base[g(i), k]``.
- *seeded* permutations: ``pi_i`` is permutation ``i`` of the seeded generator
  (``compactnn.formats.permseq.seeded_permutations``) and ``g(i) = i * G // m``;
  nothing but the seed is stored, the index buffer is rebuilt on construction and
  kept out of the state dict.
- *data-derived* permutations (``PermutedLinear.from_linear``): ``pi_i`` is the rank
  order of row ``i`` of a trained weight (a stable argsort), the sorted rows are
  grouped by k-means into ``G`` groups (one group: all rows) and each base sequence
  is the mean of its group's sorted rows; the indices are stored.

Forward: the weight is gathered from ``base`` with one ``index_select`` through a
flat index buffer ``index[i, j] = g(i) * n + rank_i(j)``, then one ``F.linear``.
Gathering the weight costs ``m n`` reads per call whatever the batch size ``B``;
gathering the *input* per row instead costs ``B m n`` gathers and turns the product
into ``B m`` separate dot products without BLAS, so the weight gather is the faster
of the two from ``B = 2`` on (``benchmarks/structured.py`` measures both). The
backward of ``index_select`` is an ``index_add`` into ``base``: the gradient of a
base entry is the sum over the weights that use it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compactnn._validate import integer
from compactnn.formats.permseq import PermSeq, seeded_groups, seeded_permutations, sortable_keys

__all__ = ["PermutedLinear", "sorted_row_groups"]


def sorted_row_groups(
    W: np.ndarray, groups: int, seed: int = 0, assign: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank order, groups and base sequences of a dense (m, n) weight.

    Returns ``(perm, group, base)``: ``perm`` (m, n) the stable rank order of each row
    (``W[i, perm[i]]`` ascending), ``group`` (m,) and ``base`` (G, n) float32, the mean
    of each group's sorted rows. Rows are grouped by k-means on the sorted rows
    (scikit-learn, seeded) unless ``assign`` fixes the groups.
    """
    W = np.ascontiguousarray(W, dtype=np.float32)
    m, n = W.shape
    perm = np.argsort(sortable_keys(W), axis=1, kind="stable")
    S = np.take_along_axis(W, perm, axis=1).astype(np.float64)
    G = min(int(groups), m)
    if assign is not None:
        group = np.asarray(assign, dtype=np.int64)
        G = int(groups)
    elif G <= 1:
        group = np.zeros(m, np.int64)
    elif G == m:
        group = np.arange(m)
    else:
        from sklearn.cluster import KMeans

        group = KMeans(n_clusters=G, n_init=4, random_state=seed).fit_predict(S).astype(np.int64)
    counts = np.bincount(group, minlength=G)
    sums = np.zeros((G, n))
    np.add.at(sums, group, S)
    base = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    return perm, group, base


def _flat_index(group: np.ndarray, perm: np.ndarray, n: int) -> torch.Tensor:
    """``index[i, perm[i, k]] = group[i] * n + k`` as int32 (int64 beyond 2**31)."""
    m = perm.shape[0]
    G = int(group.max()) + 1 if m else 0
    dt = np.int32 if G * n < 2**31 else np.int64
    index = np.empty((m, n), dtype=dt)
    index[np.arange(m)[:, None], perm] = group.astype(dt)[:, None] * n + np.arange(n, dtype=dt)
    return torch.from_numpy(index)


class PermutedLinear(nn.Module):
    """Linear layer whose rows are permutations of ``groups`` learnable base sequences.

    ``PermutedLinear(in, out, groups, seed)`` is a seeded layer trained from scratch;
    ``PermutedLinear.from_linear(linear, groups)`` derives the permutations from a
    trained ``nn.Linear``.

    >>> layer = PermutedLinear(8, 4, groups=2, seed=1)
    >>> w = layer.weight.detach()
    >>> bool((w[1].sort().values == layer.base[0].detach().sort().values).all())
    True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        groups: int = 1,
        seed: int = 0,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        integer("in_features", in_features, 1)
        integer("out_features", out_features, 1)
        integer("groups", groups, 1)
        groups = min(groups, out_features)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / in_features**0.5  # nn.Linear's default initialisation range
        self.base = nn.Parameter(
            torch.empty(groups, in_features, device=device, dtype=dtype).uniform_(-bound, bound)
        )
        self.bias = None
        if bias:
            b = torch.empty(out_features, device=device, dtype=dtype).uniform_(-bound, bound)
            self.bias = nn.Parameter(b)
        self.seed: int | None = None
        self.register_buffer("perm_seed", torch.tensor(-1, dtype=torch.int64))
        self._set_seeded(seed)
        self.register_load_state_dict_post_hook(_reseed_after_load)

    def _set_seeded(self, seed: int) -> None:
        m, n = self.out_features, self.in_features
        perm = seeded_permutations(seed, m, n)  # validates the seed
        self.seed = int(seed)
        self.perm_seed.fill_(self.seed)
        index = _flat_index(seeded_groups(m, self.groups), perm, n).to(self.base.device)
        self.register_buffer("index", index, persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, groups: int = 1, seed: int = 0) -> PermutedLinear:
        """Data-derived layer from a trained ``nn.Linear``: rank-order permutations,
        k-means groups of the sorted rows (``seed`` seeds k-means), base = group means."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected nn.Linear, got {type(linear).__name__}")
        W = linear.weight.detach().to("cpu", torch.float32).numpy()
        perm, group, base = sorted_row_groups(W, groups, seed)
        return cls._with_index(base, group, perm, linear.bias, linear.weight.device)

    @classmethod
    def from_permseq(cls, matrix: PermSeq, bias: torch.Tensor | None = None) -> PermutedLinear:
        """Layer computing ``matrix`` (seeded or with stored indices) plus ``bias``."""
        if not isinstance(matrix, PermSeq):
            raise TypeError(f"expected a PermSeq matrix, got {type(matrix).__name__}")
        m, n = matrix.shape
        if matrix.seed is not None:
            layer = cls(n, m, matrix.groups, matrix.seed, bias=bias is not None)
            with torch.no_grad():
                layer.base.copy_(torch.from_numpy(matrix.base))
                if bias is not None:
                    layer.bias.copy_(bias)
            return layer
        return cls._with_index(
            matrix.base, matrix.row_groups.astype(np.int64), matrix.permutations, bias, "cpu"
        )

    @classmethod
    def _with_index(cls, base, group, perm, bias, device) -> PermutedLinear:
        m, n = perm.shape
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features, layer.seed = n, m, None
        layer.base = nn.Parameter(torch.tensor(np.asarray(base), device=device))
        layer.bias = None if bias is None else nn.Parameter(bias.detach().clone().to(device))
        layer.register_buffer("perm_seed", torch.tensor(-1, dtype=torch.int64))
        index = _flat_index(np.asarray(group), np.asarray(perm), n)
        layer.register_buffer("index", index.to(device))
        layer.register_load_state_dict_post_hook(_reseed_after_load)
        return layer

    @property
    def groups(self) -> int:
        """Number of base sequences ``G``."""
        return int(self.base.shape[0])

    @property
    def weight(self) -> torch.Tensor:
        """The (out, in) weight gathered from ``base`` (differentiable)."""
        flat = self.base.reshape(-1).index_select(0, self.index.reshape(-1))
        return flat.view(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def to_permseq(self) -> PermSeq:
        """The weight as a lossless ``permseq`` matrix (seed only, or indices)."""
        base = self.base.detach().to("cpu", torch.float32).numpy().copy()
        if self.seed is not None:
            return PermSeq.seeded(base, self.out_features, self.seed)
        index = self.index.cpu().numpy()
        n = self.in_features
        group = index[:, 0] // n
        perm = np.argsort(index, axis=1, kind="stable")
        return PermSeq.from_parts(base, group, perm)

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the gathered weight."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.weight)
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out.to(self.base.device)

    def extra_repr(self) -> str:
        kind = f"seed={self.seed}" if self.seed is not None else "data-derived"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"groups={self.groups}, {kind}, bias={self.bias is not None}"
        )


def _reseed_after_load(module: PermutedLinear, incompatible_keys) -> None:
    """A loaded ``perm_seed`` rebuilds a seeded layer's permutations."""
    s = int(module.perm_seed)
    if module.seed is not None and s != module.seed:
        if s < 0:
            module.perm_seed.fill_(module.seed)
            raise ValueError("state dict holds a data-derived PermutedLinear; load it into "
                             "a layer built with PermutedLinear.from_linear")
        module._set_seeded(s)
