"""Files written by earlier versions keep loading to the same weights: a container
version-1 file with ANS (version 1) archives, written before the adaptive coder and
the packed layout existed, and a packed file with adaptive (version 2) archives.
Both hold the same constrained LeNet-300-100 (``in_features=64``, ``constrain_`` seed
0, sparsity 0.9; see ``tests/io/helpers.py``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from compactnn import zoo
from compactnn.io import inspect, load
from compactnn.nn import to_dense
from tests.io.helpers import constrain_

GOLDEN = Path(__file__).parent / "golden"
DENSE_SHA256 = "8262718e83a1abf74f724e44a3ad8012670b9c7d25df961f05c99af0da7960c7"


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name, coder", [("v1_archive_ans.cnn", "ans"),
                                         ("packed1_archive_adaptive.cnn", "adaptive")])
def test_golden_file_loads_to_the_same_weights(name, coder):
    back = load(GOLDEN / name)
    assert digest(to_dense(back)) == DENSE_SHA256
    assert {li.coder for li in inspect(GOLDEN / name).layers} == {coder}


def test_golden_weights_are_the_helper_model():
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=64), 0, sparsity=0.9)
    assert digest(model) == DENSE_SHA256
