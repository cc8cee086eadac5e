"""Small constrained models and file-forging helpers shared by the io tests."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from compactnn.io.container import decode_file, encode_file


def constrain_(model: nn.Module, seed: int = 0, sparsity: float = 0.8) -> nn.Module:
    """Prune and weight-share every Linear/Conv2d weight in place (a stand-in for the
    transforms: few distinct values, many zeros)."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.tensor([-0.25, -0.125, 0.0625, 0.1875, 0.3125])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                w = m.weight
                w.copy_(levels[torch.randint(0, len(levels), w.shape, generator=g)])
                w[torch.rand(w.shape, generator=g) < sparsity] = 0.0
    return model


class Net(nn.Module):
    """A custom (non-zoo) model: grouped strided conv, batch norm, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 5, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))))


def net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    model = constrain_(Net(), seed)
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    return model.eval()


def parts(raw: bytes) -> tuple[int, dict, dict, bytes]:
    """(header length, header JSON, description, data) of a file's bytes."""
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8:8 + n])
    desc = json.loads(head["__metadata__"]["compactnn"])
    return n, head, desc, raw[8 + n:]


def raw_file(head: dict, data: bytes) -> bytes:
    """Bytes of a file with exactly this header (no canonical form, no checksums)."""
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + data


def reforge(raw: bytes, edit) -> bytes:
    """Decode a valid file, let ``edit(tensors, description)`` change it, and encode it
    again with fresh checksums, so only the deeper validation can catch the change."""
    arrays, desc = decode_file(raw)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    edit(arrays, desc)
    return encode_file(arrays, desc)
