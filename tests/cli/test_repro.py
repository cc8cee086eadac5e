"""Reproducibility: the same command twice with the same inputs and seed writes the same
bytes (train, compress, convert), and ``--formats-from`` replays a ``fastest`` choice."""

from __future__ import annotations

import json

import pytest

from compactnn.cli import main
from compactnn.io import inspect

RECIPE = ("- {method: prune, p: 70, schedule: [50], finetune: {epochs: 1, lr: 0.001}}\n"
          "- {method: cws, k: 8}\n- {method: finetune, epochs: 1, lr: 0.0001}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("repro")
    (d / "r.yaml").write_text(RECIPE)
    for i in (1, 2):
        assert main(["train", "--model", "lenet300", "--dataset", "digits", "--epochs", "1",
                     "-o", str(d / f"base{i}.safetensors")]) == 0
        assert main(["compress", str(d / "base1.safetensors"), "--recipe", str(d / "r.yaml"),
                     "--dataset", "digits", "-o", str(d / f"c{i}.safetensors")]) == 0
        assert main(["convert", str(d / "c1.safetensors"), "--policy", "smallest",
                     "-o", str(d / f"s{i}.cnn")]) == 0
    return d


@pytest.mark.parametrize("stem", ["base{}.safetensors", "c{}.safetensors", "s{}.cnn"])
def test_same_command_same_bytes(runs, stem):
    a, b = (runs / stem.format(i) for i in (1, 2))
    assert a.read_bytes() == b.read_bytes()


def test_fastest_is_recorded_and_replayed(runs, capsys):
    fast = runs / "fast.cnn"
    assert main(["convert", str(runs / "c1.safetensors"), "--policy", "fastest",
                 "-o", str(fast)]) == 0
    rec = inspect(fast).metadata["fastest"]
    assert set(rec["layers"]) == {li.name for li in inspect(fast).layers}
    for name, entry in rec["layers"].items():
        # the record rounds to 3 digits, so formats running the same kernel can tie there
        assert entry["seconds"][entry["format"]] == min(entry["seconds"].values()), name
    outs = []
    for i in (1, 2):
        out = runs / f"replay{i}.cnn"
        assert main(["convert", str(runs / "c1.safetensors"), "--formats-from", str(fast),
                     "-o", str(out)]) == 0
        outs.append(out.read_bytes())
        info = inspect(out)
        assert [li.format for li in info.layers] == [li.format for li in inspect(fast).layers]
        assert json.dumps(info.metadata["fastest"]) == json.dumps(rec)
    assert outs[0] == outs[1]
    capsys.readouterr()
