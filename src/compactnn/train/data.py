"""Batches of any ``torch.utils.data`` input: ``TensorDataset``, map-style ``Dataset``,
``IterableDataset`` or a ready ``DataLoader``.

A dataset yields ``(input, target)`` samples. A ``TensorDataset`` is indexed with a
whole batch of indices at once (fast, and the same batches as before); another
map-style dataset goes through a ``DataLoader`` with one seeded permutation per epoch
(the same order as the ``TensorDataset`` path for the same seed) and ``num_workers``; an
``IterableDataset`` is read in its own order (it shuffles itself, if at all); a
``DataLoader`` is used as it is (its own batch size, order and workers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, TensorDataset

__all__ = ["Data", "check_data", "first", "batch_count", "shuffled", "in_order", "input_sample"]

Data = Dataset | DataLoader
"""What the loops take: a ``Dataset`` (``TensorDataset``, map-style, iterable) or a
``DataLoader``."""


def check_data(data: Any) -> None:
    """``TypeError`` unless ``data`` is a ``Dataset`` or a ``DataLoader`` (a
    ``TensorDataset`` must hold (inputs, targets))."""
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise TypeError("expected a TensorDataset of (inputs, targets), got "
                            f"{len(data.tensors)} tensor(s)")
        return
    if not isinstance(data, (Dataset, DataLoader)):
        raise TypeError("expected a TensorDataset, Dataset, IterableDataset or DataLoader, "
                        f"got {type(data).__name__}")


def _pair(sample: Any) -> tuple[Any, Any]:
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise TypeError("a dataset sample (or batch) must be an (input, target) pair, got "
                        f"{type(sample).__name__}")
    return sample[0], sample[1]


def first(data: Data) -> tuple[Any, Any]:
    """The first ``(input, target)`` of ``data`` (a batch for a ``DataLoader``)."""
    check_data(data)
    if isinstance(data, TensorDataset):
        return data.tensors[0][:1], data.tensors[1][:1]
    if isinstance(data, (DataLoader, IterableDataset)):
        for sample in data:
            return _pair(sample)
        raise ValueError("the data is empty")
    if len(data) == 0:
        raise ValueError("the data is empty")
    return _pair(data[0])


def batch_count(data: Data, batch_size: int) -> int | None:
    """Batches per epoch, or None when ``data`` has no length (an ``IterableDataset``)."""
    try:
        n = len(data)
    except TypeError:
        return None
    return n if isinstance(data, DataLoader) else -(-n // batch_size)


class _Permutation(Sampler):
    """One ``torch.randperm`` from ``generator`` per pass (``RandomSampler`` draws a
    second, unused one per epoch, so its later epochs differ from ``randperm``'s)."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def _loader(data: Dataset, batch_size: int, sampler: Any, num_workers: int) -> DataLoader:
    return DataLoader(data, batch_size, sampler=sampler, num_workers=num_workers)


def shuffled(data: Data, batch_size: int, generator: torch.Generator,
             num_workers: int = 0) -> Iterator[tuple[Any, Any]]:
    """One epoch of ``(inputs, targets)`` batches in an order drawn from ``generator``
    (datasets with an index; see the module docstring for the others)."""
    if isinstance(data, TensorDataset):
        x, y = data.tensors
        order = torch.randperm(len(x), generator=generator)
        for b in range(0, len(x), batch_size):
            idx = order[b:b + batch_size]
            yield x[idx], y[idx]
        return
    if isinstance(data, DataLoader):
        it = data
    elif isinstance(data, IterableDataset):
        it = _loader(data, batch_size, None, num_workers)
    else:
        it = _loader(data, batch_size, _Permutation(len(data), generator), num_workers)
    for batch in it:
        yield _pair(batch)


def in_order(data: Data, batch_size: int, num_workers: int = 0
             ) -> Iterator[tuple[Any, Any]]:
    """``(inputs, targets)`` batches in the data's order."""
    if isinstance(data, TensorDataset):
        x, y = data.tensors
        for b in range(0, len(x), batch_size):
            yield x[b:b + batch_size], y[b:b + batch_size]
        return
    it = data if isinstance(data, DataLoader) else _loader(data, batch_size, None, num_workers)
    for batch in it:
        yield _pair(batch)


def input_sample(data: Data, count: int) -> torch.Tensor:
    """``count`` inputs of ``data`` stacked along dim 0: evenly spaced through a dataset
    with a length (all of them if it has fewer), the first ``count`` of an
    ``IterableDataset`` or a ``DataLoader`` (calibration samples)."""
    check_data(data)
    if isinstance(data, TensorDataset):
        x = data.tensors[0]
        count = min(count, len(x))
        return x[_spaced(len(x), count)]
    if isinstance(data, (DataLoader, IterableDataset)):
        rows: list[torch.Tensor] = []
        got = 0
        for sample in data:
            x = torch.as_tensor(_pair(sample)[0])
            x = x if isinstance(data, DataLoader) else x[None]
            rows.append(x[:count - got])
            got += len(rows[-1])
            if got >= count:
                break
        if not rows:
            raise ValueError("the data is empty")
        return torch.cat(rows)
    n = len(data)
    if n == 0:
        raise ValueError("the data is empty")
    return torch.stack([torch.as_tensor(_pair(data[int(i)])[0])
                        for i in _spaced(n, min(count, n))])


def _spaced(n: int, count: int) -> torch.Tensor:
    return torch.from_numpy(np.linspace(0, n - 1, count).round().astype(np.int64))
