"""``CompactLinear`` and ``CompactConv2d``: inference layers whose weights live in a
compact format and whose forward pass runs the format's own product kernels.

A linear layer computes ``y = W x + b`` as ``W @ X^T`` on the ``(in, batch)`` input
(``matvec`` for a single row). A convolution unfolds its input (im2col, torch's
``F.unfold``) into ``(in_channels/groups * kh * kw, batch * positions)`` per group and
multiplies each group's ``(out_channels/groups, in_channels/groups * kh * kw)``
matrix with it. Stride, padding (numbers, ``"valid"``, ``"same"``), dilation and groups
follow ``torch.nn.Conv2d`` with ``padding_mode="zeros"``. The layers are inference-only:
no gradient flows through the compact weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

from compactnn.errors import UserError
from compactnn.formats import CompactMatrix
from compactnn.kernels import backend

_F32 = torch.float32
# a module's hook tables, torch's global ones (dicts it fills in place) and its JIT
# tracing state: what the native fast paths (this module's, nn.chain's) must see empty
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = tuple(getattr(_module, "_global" + h) for h in _HOOKS)
_tracing = torch._C._get_tracing_state


def hooked(mods: tuple) -> bool:
    """Whether any module of ``mods`` or torch's global tables has a hook."""
    return any(_GLOBAL_HOOKS) or any(getattr(m, h) for m in mods for h in _HOOKS)


def hook_sizes(mods: tuple) -> tuple:
    """A native ``Chain``'s ``sizes`` guards: every hook table of ``mods`` and torch's
    global ones must stay empty."""
    return (tuple((getattr(m, h), 0) for m in mods for h in _HOOKS)
            + tuple((h, 0) for h in _GLOBAL_HOOKS))

__all__ = ["CompactConv2d", "CompactLinear", "LayerRecord", "UnsupportedLayerError"]


class UnsupportedLayerError(TypeError, UserError):
    """A layer cannot be represented by a compact layer (e.g. a non-zero padding mode)."""


@dataclass
class LayerRecord:
    """What ``to_compact`` chose for one layer and why.

    ``bytes`` counts the runtime format's arrays; ``stored_bytes`` the arrays as written
    to a file (equal unless ``storage == "archive"``, an entropy-coded stream decoded at
    load). ``entropy_bits`` is the i.i.d. entropy bound of the weight entries
    (``compactnn.entropy_bits``). ``candidates`` maps each tried format to its bytes;
    ``times`` (policy ``fastest`` only) to its median product time in seconds.
    """

    name: str
    kind: str
    shape: tuple[int, int]
    groups: int
    format: str
    bytes: int
    storage: str
    stored_bytes: int
    entropy_bits: float
    energy_pj: float
    reason: str
    candidates: dict[str, int] = field(default_factory=dict)
    times: dict[str, float] | None = None

    @property
    def weights(self) -> int:
        """Number of weight entries (all groups)."""
        return self.groups * self.shape[0] * self.shape[1]

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight entry."""
        return 8.0 * self.stored_bytes / self.weights if self.weights else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def _as_input(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor input, got {type(x).__name__}")
    if not x.is_cpu:
        raise ValueError(f"compact layers run on the CPU, got a tensor on {x.device}")
    if x.dtype is not torch.float32:
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point input, got {x.dtype}")
        x = x.to(torch.float32)
    return x.detach() if x.requires_grad else x


def _product(M: CompactMatrix, X: np.ndarray) -> np.ndarray:
    """``M @ X`` for a C-contiguous float32 ``(n, b)`` array (``matvec`` when b == 1),
    on the format's unchecked fast path: this module validated the arrays already."""
    m, b = M.shape[0], X.shape[1]
    if b == 1:
        y = np.empty(m, np.float32)
        M.matvec_into(X.reshape(-1), y)
        return y.reshape(m, 1)
    Y = np.empty((m, b), np.float32)
    M.matmul_into(X, Y)
    return Y


def _rows_up_to(matrix: CompactMatrix, kernel: Any, rows: int, top: int = 1 << 24) -> int:
    """The most rows (up to ``top``) for which ``matrix.fused_rows`` still gives
    ``kernel``, found by bisection from ``rows`` (the formats switch away from their
    fused kernel above a threshold; any row count is computed right by it)."""
    if matrix.fused_rows(top) is kernel:
        return top
    lo, hi = rows, top  # fused at lo, not at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if matrix.fused_rows(mid) is kernel else (lo, mid)
    return lo


class _CompactBase(nn.Module):
    matrices: list[CompactMatrix]
    record: LayerRecord | None
    archives: list[Any] | None

    def _init_common(self, matrices: list[CompactMatrix], bias: torch.Tensor | None,
                     out_features: int) -> None:
        self.matrices = list(matrices)
        if bias is not None:
            bias = torch.as_tensor(bias).detach().to(torch.float32).reshape(-1).clone()
            if bias.numel() != out_features:
                raise ValueError(f"bias has {bias.numel()} entries, expected {out_features}")
        self.register_buffer("bias", bias)
        self._bias_src: torch.Tensor | None = None
        self._bias_ptr = 0
        self._bias_np: np.ndarray | None = None
        self.record = None
        self.archives = None

    def _bias_array(self) -> np.ndarray | None:
        """The bias as a numpy view of the buffer, cached while the buffer and its memory
        stay the same (copies and replaced buffers get a fresh view)."""
        b = self._buffers["bias"]
        if b is None:
            return None
        if b is not self._bias_src or b.data_ptr() != self._bias_ptr:
            self._bias_src, self._bias_ptr = b, b.data_ptr()
            self._bias_np = b.detach().numpy()
        return self._bias_np

    @property
    def weight(self) -> torch.Tensor:
        """A meta tensor with the dense weight's shape and dtype (float32) but no values,
        for code that only reads ``layer.weight.dtype`` / ``.shape`` (``transformers``
        models do); ``weight_matrix()`` decodes the values."""
        if isinstance(self, CompactConv2d):
            shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        else:
            shape = self.matrices[0].shape
        return torch.empty(shape, dtype=torch.float32, device="meta")

    @property
    def format_id(self) -> str:
        """Id of the runtime format of the weights."""
        return self.matrices[0].format_id

    @property
    def nbytes(self) -> int:
        """Bytes of the compact weight arrays (all groups)."""
        return sum(M.nbytes for M in self.matrices)


class CompactLinear(_CompactBase):
    """``nn.Linear`` replacement holding its ``(out, in)`` weight in any format.

    >>> from compactnn import formats
    >>> W = np.eye(3, dtype=np.float32)
    >>> layer = CompactLinear(formats.get("csr").from_dense(W), bias=torch.ones(3))
    >>> layer(torch.ones(2, 3)).tolist()
    [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    """

    def __init__(self, matrix: CompactMatrix, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(matrix, CompactMatrix):
            raise TypeError(f"expected a CompactMatrix, got {type(matrix).__name__}")
        self.out_features, self.in_features = matrix.shape
        self._init_common([matrix], bias, self.out_features)
        self._plan: Any = None  # the fast path's native Chain, made on first call

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave out the fast path's plan (a native object)."""
        state = super().__getstate__()
        state["_plan"] = None
        return state

    @property
    def matrix(self) -> CompactMatrix:
        """The compact weight."""
        return self.matrices[0]

    def weight_matrix(self) -> np.ndarray:
        """The dense ``(out, in)`` weight, decoded (not used by ``forward``)."""
        return self.matrix.to_dense()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The fast path, one native call (``Chain.call``, ``csrc/py_chain.c``) that
        checks the input, the layer's hooks, torch's global hooks and tracing state,
        the matrix and the bias buffer (identity and address), allocates the output and
        runs the fused kernel, bias included. Its plan (the kernel for up to the most
        rows the format runs it on) is made again when the rows exceed that, or the
        matrix or the bias changes; copies drop it.
        Anything it does not take goes through ``nn.Module.__call__`` / ``forward``,
        with the same results."""
        if len(args) == 1 and not kwargs and self._compiled_call_impl is None:
            plan = self._plan
            if plan is not None and backend.native() is not None:
                y = plan.call(args[0])
                if y is not None:
                    return y
            if self._replan(args[0]):
                y = self._plan.call(args[0])
                if y is not None:
                    return y
        return super().__call__(*args, **kwargs)

    def chain_guards(self) -> tuple[tuple, tuple]:
        """A native ``Chain``'s ``guards`` and ``ptrs`` for this layer: its matrix list,
        its matrix and its bias buffer stay the same objects, the buffer at the same
        address."""
        bias = self._buffers["bias"]
        return (((self.__dict__, "matrices", self.matrices),
                 (self.matrices, 0, self.matrices[0]), (self._buffers, "bias", bias)),
                () if bias is None else ((bias, bias.data_ptr()),))

    def _replan(self, x: Any) -> bool:
        """Plan the fast path for ``x``'s batch; False when the layer or ``x`` does not
        take it (hooks, tracing, numba kernels, another input, no fused kernel)."""
        n, m = self.in_features, self.out_features
        nat = backend.native()
        if (nat is None or not n or not m or _tracing() or hooked((self,))
                or type(x) is not torch.Tensor
                or x.dtype is not _F32 or not x.is_cpu or x.dim() < 2 or x.shape[-1] != n
                or not x.is_contiguous()):
            return False
        b = x.numel() // n
        matrix = self.matrices[0]
        kernel = matrix.fused_rows(b) if b else None
        if kernel is None:
            return False
        guards, ptrs = self.chain_guards()
        plan = nat.Chain((kernel,), (self._bias_array(),), (False,), guards,
                         hook_sizes((self,)), ptrs)
        plan.set_call(torch.Tensor, _F32, _tracing, _rows_up_to(matrix, kernel, b))
        self._plan = plan
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_input(x)
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"CompactLinear expects inputs with last dimension {self.in_features}, "
                f"got shape {tuple(x.shape)}"
            )
        n, m = self.in_features, self.out_features
        x2 = x if x.dim() == 2 else x.reshape(-1, n)
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        b = x2.shape[0]
        bias = self._bias_array()
        Y = np.empty((b, m), np.float32)
        kernel = self.matrices[0].fused_rows(b) if b and m else None
        if kernel is not None:  # one native call, bias included; x2 checked above
            kernel.rows(x2.data_ptr(), Y, b, bias)
        else:
            # inputs as rows: X @ Wᵀ (batch 1: one matvec on the row)
            self.matrices[0].rmatmul_into(x2.numpy(), Y)
            if bias is not None:
                np.add(Y, bias, out=Y)
        y = torch.from_numpy(Y)
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], m)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, format={self.format_id}, nbytes={self.nbytes}")


def _pair(v: int | tuple[int, ...], name: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and i >= 0 for i in t):
        raise ValueError(f"{name} must be an int or a pair of non-negative ints, got {v!r}")
    return int(t[0]), int(t[1])


class CompactConv2d(_CompactBase):
    """``nn.Conv2d`` replacement (zero padding) computing the convolution as im2col
    products with one compact ``(out/groups, in/groups*kh*kw)`` matrix per group.

    >>> from compactnn import formats
    >>> W = np.ones((2, 1 * 3 * 3), np.float32)
    >>> conv = CompactConv2d([formats.get("dense").from_dense(W)], None, 1, 2, 3, padding=1)
    >>> conv(torch.ones(1, 1, 4, 4)).shape
    torch.Size([1, 2, 4, 4])
    """

    def __init__(self, matrices: list[CompactMatrix], bias: torch.Tensor | None,
                 in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"padding must be 'valid', 'same' or ints, got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("padding='same' requires stride 1")
            self.padding: tuple[int, int] | str = padding
        else:
            self.padding = _pair(padding, "padding")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.kernel_size) < 1:
            raise ValueError("kernel_size, stride and dilation must be >= 1")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        kh, kw = self.kernel_size
        want = (out_channels // groups, in_channels // groups * kh * kw)
        if len(matrices) != groups:
            raise ValueError(f"expected {groups} matrices (one per group), got {len(matrices)}")
        for g, M in enumerate(matrices):
            if not isinstance(M, CompactMatrix):
                raise TypeError(f"group {g}: expected a CompactMatrix, got {type(M).__name__}")
            if M.shape != want:
                raise ValueError(f"group {g}: matrix shape {M.shape}, expected {want}")
        self._init_common(matrices, bias, out_channels)

    def weight_matrix(self) -> np.ndarray:
        """Dense ``(out, in/groups*kh*kw)`` weight (groups stacked along rows)."""
        return np.concatenate([M.to_dense() for M in self.matrices], axis=0)

    def _explicit_padding(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.padding == "valid":
            return x, (0, 0)
        if self.padding == "same":
            pads = []
            for k, d in zip(self.kernel_size[::-1], self.dilation[::-1], strict=True):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return F.pad(x, pads), (0, 0)
        return x, self.padding  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_input(x)
        unbatched = x.dim() == 3
        if unbatched:
            x = x[None]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"CompactConv2d expects (N, {self.in_channels}, H, W) inputs, "
                f"got shape {tuple(x.shape)}"
            )
        x, pad = self._explicit_padding(x)
        B, _, H, W = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        oh = (H + 2 * pad[0] - dh * (kh - 1) - 1) // sh + 1
        ow = (W + 2 * pad[1] - dw * (kw - 1) - 1) // sw + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"input of size {H}x{W} is smaller than the kernel")
        with torch.no_grad():
            cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=pad,
                            stride=self.stride)  # (B, C*kh*kw, L)
            L = cols.shape[2]
            n = self.in_channels // self.groups * kh * kw
            outs = []
            for g, M in enumerate(self.matrices):
                Xg = cols[:, g * n:(g + 1) * n, :].permute(1, 0, 2).reshape(n, B * L)
                outs.append(torch.from_numpy(_product(M, np.ascontiguousarray(Xg.numpy()))))
            Y = torch.cat(outs, 0) if len(outs) > 1 else outs[0]  # (O, B*L)
            y = Y.reshape(self.out_channels, B, L).permute(1, 0, 2)
            if self.bias is not None:
                y = y + self.bias[None, :, None]
            y = y.reshape(B, self.out_channels, oh, ow)
        return y[0] if unbatched else y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}, format={self.format_id}, "
                f"nbytes={self.nbytes}")
