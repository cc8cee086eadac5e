"""Layer kind ``linear``: a ``CompactLinear`` (one matrix ``(out, in)``, optional bias)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from compactnn.io.container import CompactFileError
from compactnn.io.schema import LayerEntry, register_kind
from compactnn.nn.layers import CompactLinear
from compactnn.nn.structured import geometry_shell

__all__ = ["LinearEntry"]


@register_kind
@dataclass(frozen=True)
class LinearEntry(LayerEntry):
    """A linear layer: ``shape`` is ``(out_features, in_features)``, one group."""

    kind = "linear"
    modules = (CompactLinear,)

    @classmethod
    def own_from_json(cls, obj: dict[str, Any], common: dict[str, Any],
                      bad: Callable[[str], CompactFileError]) -> dict[str, Any]:
        if common["groups"] != 1:
            raise bad(f"a linear layer has one group, not {common['groups']}")
        return {}

    def check_module(self, m: nn.Module, bad: Callable[[str], CompactFileError]) -> None:
        m = geometry_shell(m)  # a structured layer of the skeleton: its plain twin
        if not isinstance(m, (nn.Linear, CompactLinear)):
            raise bad(f"the model has a {type(m).__name__} there, not Linear")
        if (m.out_features, m.in_features) != self.shape:
            raise bad(f"file has shape {list(self.shape)}, the model "
                      f"({m.out_features}, {m.in_features})")
        if (m.bias is not None) != self.bias:
            raise bad(f"bias {'present' if self.bias else 'absent'} in the file but not in "
                      "the model")

    def dense_shape(self) -> tuple[int, ...]:
        return self.shape

    def build(self, matrices: list[Any], bias: Any) -> nn.Module:
        return CompactLinear(matrices[0], bias)
