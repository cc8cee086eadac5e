"""Chained forward passes: an ``nn.Sequential`` of compact Linear layers and ReLUs
(after an optional leading ``Flatten``) runs as one native call.

Module by module, each layer of a small model pays a few microseconds of Python
(``nn.Module`` dispatch, input checks, output allocation, a separate ReLU op) around a
kernel of a few microseconds. :func:`install_chains` gives every such ``Sequential`` a
:class:`ChainedForward` as its instance ``forward``: it checks the input once,
allocates the output once and runs every product, bias and ReLU in one call of the
native ``Chain`` (``csrc/py_chain.c``), whose guards fall back to the module-by-module
forward whenever the modules, their hooks, their matrices or their biases are not
those the chain was built from. Results are bit-identical to the module-by-module
forward (the same kernels in the same order). The model's class, state dict and file
are unchanged; on the numba path, for unsupported inputs and for batch sizes without
fused kernels the ordinary forward runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compactnn.kernels import backend
from compactnn.nn.layers import CompactLinear, hook_sizes, hooked

__all__ = ["ChainedForward", "install_chains", "remove_chains"]

_MAX_BATCHES = 64  # batch sizes whose kernel check is cached


def _chainable(seq: nn.Module) -> bool:
    """Whether ``seq`` is a plain ``Sequential`` of [Flatten] (CompactLinear [ReLU])+."""
    if type(seq) is not nn.Sequential:
        return False
    mods = list(seq._modules.values())
    if mods and type(mods[0]) is nn.Flatten:
        if (mods[0].start_dim, mods[0].end_dim) != (1, -1):
            return False
        mods = mods[1:]
    if not mods:
        return False
    prev = None
    for m in mods:
        if type(m) is CompactLinear:
            if len(m.matrices) != 1:
                return False
        elif type(m) is not nn.ReLU or type(prev) is not CompactLinear:
            return False
        prev = m
    return True


class ChainedForward:
    """The instance ``forward`` of a chainable ``nn.Sequential`` (see the module
    docstring); holds the native chain, built on first use."""

    def __init__(self, seq: nn.Sequential) -> None:
        self.seq = seq
        self._reset()

    def _reset(self) -> None:
        self._chain: Any = None  # the native Chain, or False: not chainable as it is
        self._signature: tuple = ()
        self._hooked = False  # not chainable because of hooks (re-planned without them)
        self._batches: dict[int, bool] = {}
        self._flatten = False
        self._n_in = self._n_out = 0
        self._layers: list[CompactLinear] = []

    def __getstate__(self) -> dict[str, Any]:  # copies rebuild the native chain
        return {"seq": self.seq}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.seq = state["seq"]
        self._reset()

    def _build(self) -> None:
        """Plan the chain from the modules as they are now."""
        seq = self.seq
        mods = seq._modules
        self._reset()
        self._signature = tuple(mods.values())
        self._chain = False
        nat = backend.native()
        self._hooked = hooked(self._signature)
        if nat is None or self._hooked or not _chainable(seq):
            return
        layers = [m for m in self._signature if type(m) is CompactLinear]
        kernels = [L.matrices[0].fused_rows(1) for L in layers]
        if any(k is None for k in kernels) or any(L.out_features < 1 or L.in_features < 1
                                                  for L in layers):
            return
        sig = self._signature
        relu = [type(b) is nn.ReLU for a, b in zip(sig, sig[1:], strict=False)
                if type(a) is CompactLinear] + [False]
        guards: list[tuple] = [(mods, k, v) for k, v in mods.items()]
        sizes: list[tuple] = [(mods, len(mods))]
        ptrs: list[tuple] = []
        biases = []
        for L in layers:
            g, p = L.chain_guards()
            guards += g
            ptrs += p
            biases.append(L._bias_array())
        sizes += hook_sizes(self._signature)
        self._chain = nat.Chain(tuple(kernels), tuple(biases), tuple(relu[:len(layers)]),
                                tuple(guards), tuple(sizes), tuple(ptrs))
        self._layers = layers
        self._flatten = type(self._signature[0]) is nn.Flatten
        self._n_in, self._n_out = layers[0].in_features, layers[-1].out_features

    def _fused(self, batch: int) -> bool:
        """Whether every layer's fused kernel for ``batch`` is the chain's."""
        ok = self._batches.get(batch)
        if ok is None:
            if len(self._batches) >= _MAX_BATCHES:
                self._batches.clear()
            first = [L.matrices[0].fused_rows(1) for L in self._layers]
            ok = self._batches[batch] = all(L.matrices[0].fused_rows(batch) is k
                                            for L, k in zip(self._layers, first, strict=True))
        return ok

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        chain = self._chain
        if chain is None or (chain is False and (
                tuple(self.seq._modules.values()) != self._signature
                or (self._hooked and not hooked(self._signature)))):
            self._build()
            chain = self._chain
        if (chain is not False and type(input) is torch.Tensor
                and input.dtype is torch.float32 and not input.requires_grad
                and input.is_cpu and input.is_contiguous()
                and (input.dim() >= 2 if self._flatten else input.dim() == 2)
                and backend.native() is not None):
            b = input.shape[0]
            if b and input.numel() == b * self._n_in and self._fused(b):
                y = input.new_empty(b, self._n_out)  # float32 on the CPU, like input
                if chain.run(input.data_ptr(), b, y.data_ptr()):
                    return y
                self._chain = None  # a guard failed: plan again next call
        return nn.Sequential.forward(self.seq, input)


def install_chains(model: nn.Module) -> int:
    """Give every chainable ``nn.Sequential`` in ``model`` (itself included) a
    :class:`ChainedForward`; returns how many. Sequentials whose ``forward`` is
    already overridden on the instance are left alone."""
    count = 0
    for m in model.modules():
        if _chainable(m) and "forward" not in m.__dict__:
            m.forward = ChainedForward(m)
            count += 1
    return count


def remove_chains(model: nn.Module) -> None:
    """Undo :func:`install_chains` on every module of ``model``."""
    for m in model.modules():
        if isinstance(m.__dict__.get("forward"), ChainedForward):
            del m.forward
