"""``PackedEmbedding`` as a checked layer kind: ``check_state()`` (the ``packed_codes``
format's ``check()``) refuses out-of-range codes, non-zero padding and bad codebooks;
``load`` and ``save`` call it, so a file with
codes set to 0xFF is a ``CompactFileError``, not an ``IndexError`` at the first lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from compactnn import formats
from compactnn.io import CompactFileError, load, save
from compactnn.nn import to_compact
from compactnn.zoo.transformer import PackedEmbedding
from tests.io.helpers import reforge


class Tagger(nn.Module):
    def __init__(self, emb: PackedEmbedding) -> None:
        super().__init__()
        self.emb = emb
        self.head = nn.Linear(5, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids))


def packed() -> PackedEmbedding:
    W = torch.tensor([[0.5, 0.0, 0.0, -1.0, 0.5], [0.0, -1.0, 0.5, 0.0, 0.0],
                      [0.5, 0.5, 0.5, 0.0, -1.0]])
    return PackedEmbedding.from_weight(W)


GOLDEN = Path(__file__).parent / "golden" / "packed_embedding.safetensors"


def golden_table() -> torch.Tensor:
    """A fixed 11x13 table with 5 distinct values (3 code bits, padded rows)."""
    vals = torch.tensor([0.0, 0.25, -0.5, 0.75, -0.0])
    idx = (torch.arange(11 * 13) * 7919 + 17) % 101 % 5
    return vals[idx].reshape(11, 13)


def write_golden() -> Path:
    from safetensors.torch import save_file

    e = PackedEmbedding.from_weight(golden_table())
    GOLDEN.parent.mkdir(exist_ok=True)
    save_file({"table": golden_table(), "codebook": e.codebook, "codes": e.codes}, str(GOLDEN))
    return GOLDEN


def test_golden_layout():
    """The packed layout is stable: a change fails here (regenerate on purpose with
    ``python -m tests.io.test_packed_embedding``)."""
    from safetensors.torch import load_file

    assert GOLDEN.exists(), f"missing {GOLDEN}; run python -m tests.io.test_packed_embedding"
    g = load_file(str(GOLDEN))
    assert g["table"].numpy().tobytes() == golden_table().numpy().tobytes()
    e = PackedEmbedding.from_weight(g["table"])
    assert e.codebook.numpy().tobytes() == g["codebook"].numpy().tobytes()
    assert e.codes.dtype == g["codes"].dtype and e.codes.shape == g["codes"].shape
    assert e.codes.numpy().tobytes() == g["codes"].numpy().tobytes()
    back = PackedEmbedding(11, 13, g["codebook"].numel())
    back.load_state_dict({"codebook": g["codebook"], "codes": g["codes"]})
    back.check_state()
    fmt = formats.get("packed_codes").from_buffers(
        {"codebook": g["codebook"].numpy(), "codes": g["codes"].numpy()}, {"shape": [11, 13]})
    assert fmt.to_dense().tobytes() == g["table"].numpy().tobytes()  # one layout, two readers
    assert back.weight.numpy().view("u4").tobytes() == g["table"].numpy().view("u4").tobytes()


def test_check_state_accepts_packed_tables():
    packed().check_state()


@pytest.mark.parametrize("corrupt, match", [
    (lambda e: e.codes.fill_(0xFF), "out of range"),
    (lambda e: e.codes[:, -1].fill_(0x01), "padding codes"),
    (lambda e: e.codebook.__setitem__(1, float("nan")), "NaN or Inf"),
    (lambda e: e.codebook.__setitem__(1, e.codebook[0].item()), "repeats"),
])
def test_check_state_refuses(corrupt, match):
    e = packed()
    corrupt(e)
    with pytest.raises(ValueError, match=match):
        e.check_state()


def test_load_and_save_refuse_bad_codes(tmp_path):
    torch.manual_seed(0)
    model = Tagger(packed())
    path = tmp_path / "t.cnn"
    compact = to_compact(model, "csr", storage="raw")
    save(compact, path)
    back = load(path, model=Tagger(PackedEmbedding(3, 5, 3)))
    ids = torch.tensor([0, 2])
    assert torch.equal(back(ids), compact(ids))  # same kernels: bit for bit
    torch.testing.assert_close(back(ids), model(ids).detach())  # torch's own summation order

    def edit(arrays, desc):
        arrays["emb.codes"][:] = 0xFF

    bad = tmp_path / "bad.cnn"
    bad.write_bytes(reforge(path.read_bytes(), edit))
    with pytest.raises(CompactFileError, match="module 'emb': packed_codes: code 3"):
        load(bad, model=Tagger(PackedEmbedding(3, 5, 3)))
    broken = to_compact(model, "csr", storage="raw")
    broken.emb.codes.fill_(0xFF)
    with pytest.raises(ValueError, match="module 'emb': packed_codes: code 3"):
        save(broken, tmp_path / "never.cnn")
    assert not (tmp_path / "never.cnn").exists()


if __name__ == "__main__":
    print(write_golden())
