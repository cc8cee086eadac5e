"""Weights rebuilt for the backward pass instead of kept.

A compactnn parametrization (a pruned or weight-shared layer) builds its layer's dense
weight on every forward pass, and the layer's matrix product saves that weight for the
backward pass: during a training step every such layer's dense weight is alive at once
(as much memory as the float32 layers). The parametrization marks the weight it builds
with :func:`rebuildable` (a function that builds it again from what the layer keeps
anyway: the codebook and assignment, the mask and the original); inside
:func:`rebuild_marked` autograd saves a marked weight, or a view of it, as that function
and calls it when the backward pass needs the weight, so one layer's dense weight exists
at a time. The rebuilt weight has the same bits (the inputs of the function do not change
between the forward and the backward pass: the optimizer steps after ``backward``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["rebuildable", "rebuild_marked"]

_MARK = "_compactnn_rebuild"


def rebuildable(weight: torch.Tensor, build: Callable[[], torch.Tensor],
                *sources: torch.Tensor) -> torch.Tensor:
    """Mark ``weight`` (a fresh tensor, not a view) as rebuilt by ``build()`` from
    ``sources``; returns it. Rebuilding refuses (``RuntimeError``) once a source was
    changed in place, as autograd refuses for the tensors it saves itself."""
    versions = [s._version for s in sources]

    def checked() -> torch.Tensor:
        if [s._version for s in sources] != versions:
            raise RuntimeError("a weight's source was changed in place between the forward "
                               "and the backward pass")
        return build()

    setattr(weight, _MARK, checked)
    return weight


def _pack(t: torch.Tensor) -> Any:
    base = t if t._base is None else t._base
    build = getattr(base, _MARK, None)
    if build is None or t.device != base.device:
        return t
    return build, t.size(), t.stride(), t.storage_offset()


def _unpack(saved: Any) -> torch.Tensor:
    if isinstance(saved, torch.Tensor):
        return saved
    build, size, stride, offset = saved
    with torch.no_grad():
        return build().as_strided(size, stride, offset)


def rebuild_marked() -> torch.autograd.graph.saved_tensors_hooks:
    """A context in which autograd keeps marked weights as their build functions."""
    return torch.autograd.graph.saved_tensors_hooks(_pack, _unpack)
