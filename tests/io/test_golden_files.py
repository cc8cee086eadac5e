"""Files written by earlier versions keep loading to the same weights: a container
version-1 file with ANS (version 1) archives, written before the adaptive coder and
the packed layout existed, a packed/1 file with adaptive (version 2) archives and a
packed/2 file with adaptive version 3 archives (varint headers). All hold the same
constrained LeNet-300-100 (``in_features=64``, ``constrain_`` seed 0, sparsity 0.9; see
``tests/io/helpers.py``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from compactnn import zoo
from compactnn.io import inspect, load, save
from compactnn.nn import to_compact, to_dense
from tests.io.helpers import constrain_

GOLDEN = Path(__file__).parent / "golden"
DENSE_SHA256 = "8262718e83a1abf74f724e44a3ad8012670b9c7d25df961f05c99af0da7960c7"


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name, coder, version", [
    ("v1_archive_ans.cnn", "ans", 1), ("packed1_archive_adaptive.cnn", "adaptive", 2),
    ("packed2_archive_v3.cnn", "adaptive", 3)])
def test_golden_file_loads_to_the_same_weights(name, coder, version):
    back = load(GOLDEN / name)
    assert digest(to_dense(back)) == DENSE_SHA256
    assert {li.coder for li in inspect(GOLDEN / name).layers} == {coder}
    assert {m.archives[0].attrs["version"] for m in back.modules()
            if getattr(m, "archives", None)} == {version}


def test_golden_weights_are_the_helper_model():
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=64), 0, sparsity=0.9)
    assert digest(model) == DENSE_SHA256


def test_packed2_writer_is_stable(tmp_path):
    """The writer still makes the golden packed/2 file byte for byte: its DEFLATE
    dictionary and the version 3 archives are fixed (regenerate only on purpose)."""
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=64), 0, sparsity=0.9)
    path = tmp_path / "again.cnn"
    save(to_compact(model, "smallest", storage="auto"), path, pack=True,
         zoo=("lenet300", {"in_features": 64}))
    assert path.read_bytes() == (GOLDEN / "packed2_archive_v3.cnn").read_bytes()
