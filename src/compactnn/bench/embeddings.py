"""Quality of compressed embedding models against the original's embeddings.

- :func:`cosine_similarity`: the cosine between each compressed embedding and the
  original embedding of the same input (1.0 = same direction).
- :func:`neighbour_overlap`: nearest-neighbour retrieval agreement. Every embedding is
  a query against all the others (itself excluded) by cosine similarity; for each k the
  score is the mean over queries of ``|top_k(original) & top_k(compressed)| / k``, so
  ``k = 1`` is the fraction of queries whose nearest neighbour is unchanged.

>>> import numpy as np
>>> ref = np.eye(3, dtype=np.float32)
>>> float(cosine_similarity(ref, ref).mean())
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["cosine_similarity", "neighbour_overlap", "embedding_quality", "encode_throughput"]


def _matrix(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (items, dims) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or Inf")
    return x


def _unit(x: np.ndarray, name: str) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(f"{name} has an all-zero row (cosine undefined)")
    return x / norm


def _pair(reference, other) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(reference, "reference"), _matrix(other, "other")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: reference {a.shape}, other {b.shape}")
    return _unit(a, "reference"), _unit(b, "other")


def cosine_similarity(reference: np.ndarray | torch.Tensor,
                      other: np.ndarray | torch.Tensor) -> np.ndarray:
    """Row-wise cosine similarity ``(items,)`` float64 of two ``(items, dims)`` arrays.

    >>> cosine_similarity(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])).round(4).tolist()
    [0.7071]
    """
    a, b = _pair(reference, other)
    return np.einsum("ij,ij->i", a, b)


def _top_k(unit: np.ndarray, k: int) -> np.ndarray:
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    # stable sort of -sim: ties go to the lower index, so results are deterministic
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def neighbour_overlap(reference: np.ndarray | torch.Tensor, other: np.ndarray | torch.Tensor,
                      ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Mean top-k nearest-neighbour overlap (cosine, self excluded) for each ``k``.

    >>> ref = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> neighbour_overlap(ref, ref, ks=(1,))
    {1: 1.0}
    """
    a, b = _pair(reference, other)
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1 or max(ks) > a.shape[0] - 1:
        raise ValueError(f"each k must be in 1..{a.shape[0] - 1} (items - 1), got {ks}")
    kmax = max(ks)
    ta, tb = _top_k(a, kmax), _top_k(b, kmax)
    out = {}
    for k in ks:
        hits = [len(set(ta[i, :k]).intersection(tb[i, :k])) for i in range(a.shape[0])]
        out[k] = float(np.mean(hits)) / k
    return out


def embedding_quality(reference: np.ndarray | torch.Tensor, other: np.ndarray | torch.Tensor,
                      ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``{"cosine_mean", "cosine_min", "top1", "top5", ...}`` of ``other`` vs ``reference``."""
    cos = cosine_similarity(reference, other)
    out = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    out.update({f"top{k}": v for k, v in neighbour_overlap(reference, other, ks).items()})
    return out


def encode_throughput(model: torch.nn.Module, sentences: Sequence[str], batch_size: int = 32,
                      repeats: int = 3) -> float:
    """Sentences per second of ``compactnn.zoo.transformer.encode(model, sentences,
    batch_size)`` (tokenisation included), the median of ``repeats`` timed runs after
    one untimed warm-up batch. Pin threads with ``compactnn.bench.threads`` first."""
    import time

    from compactnn.zoo.transformer import encode

    if repeats < 1 or not sentences:
        raise ValueError("need repeats >= 1 and at least one sentence")
    encode(model, list(sentences)[:batch_size], batch_size)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        encode(model, sentences, batch_size)
        times.append(time.perf_counter() - t0)
    return len(sentences) / float(np.median(times))
