"""Layer kind ``conv2d``: a ``CompactConv2d`` (one matrix ``(out / groups, in / groups
* kh * kw)`` per group) with its convolution geometry (``conv``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from compactnn.io.container import CompactFileError
from compactnn.io.schema import MAX_DIM, LayerEntry, int_list, is_int, register_kind
from compactnn.nn.layers import CompactConv2d
from compactnn.nn.structured import geometry_shell

__all__ = ["Conv2dEntry", "conv_geometry"]


def conv_geometry(m: nn.Module) -> dict[str, Any]:
    """The ``conv`` object of a (compact or plain) 2-D convolution."""
    return {"in": m.in_channels, "out": m.out_channels, "kernel": list(m.kernel_size),
            "stride": list(m.stride), "dilation": list(m.dilation), "groups": m.groups,
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding)}


@register_kind
@dataclass(frozen=True)
class Conv2dEntry(LayerEntry):
    """A 2-D convolution; ``conv`` holds ``in``, ``out``, ``kernel``, ``stride``,
    ``dilation`` (pairs), ``groups`` and ``padding`` (a pair, ``"same"`` or ``"valid"``)."""

    kind = "conv2d"
    modules = (CompactConv2d,)
    conv: dict[str, Any] | None = None

    @classmethod
    def own_fields(cls, m: nn.Module) -> dict[str, Any]:
        return {"conv": conv_geometry(m)}

    @classmethod
    def own_from_json(cls, obj: dict[str, Any], common: dict[str, Any],
                      bad: Callable[[str], CompactFileError]) -> dict[str, Any]:
        c = obj.get("conv")
        pad = c.get("padding") if isinstance(c, dict) else None
        if (not isinstance(c, dict)
                or set(c) != {"in", "out", "kernel", "stride", "dilation", "groups", "padding"}
                or not is_int(c.get("in"), 1) or not is_int(c.get("out"), 1)
                or not int_list(c.get("kernel"), 2, 1) or not int_list(c.get("stride"), 2, 1)
                or not int_list(c.get("dilation"), 2, 1) or not is_int(c.get("groups"), 1)
                or c["groups"] != common["groups"]
                or not (pad in ("same", "valid") or int_list(pad, 2))
                or max(c["in"], c["out"], *c["kernel"], *c["stride"], *c["dilation"],
                       *(pad if isinstance(pad, list) else [0])) > MAX_DIM):
            raise bad("bad convolution geometry")
        g, (kh, kw) = c["groups"], c["kernel"]
        want = (c["out"] // g, c["in"] // g * kh * kw)
        if c["in"] % g or c["out"] % g or common["shape"] != want:
            raise bad(f"shape {list(common['shape'])} does not fit the convolution {c}")
        return {"conv": c}

    def own_json(self) -> dict[str, Any]:
        return {"conv": self.conv}

    def check_module(self, m: nn.Module, bad: Callable[[str], CompactFileError]) -> None:
        m = geometry_shell(m)
        if not isinstance(m, (nn.Conv2d, CompactConv2d)):
            raise bad(f"the model has a {type(m).__name__} there, not Conv2d")
        geo = conv_geometry(m)
        if geo != self.conv:
            raise bad(f"file has convolution {self.conv}, the model {geo}")
        kh, kw = geo["kernel"]
        want = (geo["out"] // geo["groups"], geo["in"] // geo["groups"] * kh * kw)
        if self.shape != want:
            raise bad(f"file has shape {list(self.shape)}, the model {list(want)}")
        if (getattr(m, "bias", None) is not None) != self.bias:
            raise bad(f"bias {'present' if self.bias else 'absent'} in the file but not in "
                      "the model")

    def dense_shape(self) -> tuple[int, ...]:
        c = self.conv
        return (c["out"], c["in"] // c["groups"], *c["kernel"])

    def build(self, matrices: list[Any], bias: Any) -> nn.Module:
        c = self.conv
        pad = c["padding"] if isinstance(c["padding"], str) else tuple(c["padding"])
        return CompactConv2d(matrices, bias, c["in"], c["out"], tuple(c["kernel"]),
                             tuple(c["stride"]), pad, tuple(c["dilation"]), c["groups"])
