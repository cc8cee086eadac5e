"""``benchmarks/any_model.py --stages`` runs ``compactnn compress``'s Hugging Face path
stage by stage: the same calls seeded the same way, so the same file as the command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # after everything else: nothing is shadowed

pytest.importorskip("transformers")

import any_model  # noqa: E402

from tests.anymodel.conftest import make_model_dir  # noqa: E402
from tests.cli_run import run  # noqa: E402

RECIPE = """\
- {method: prune, p: 50}
- {method: cws, k: 8, calibrate: 8}
- {method: finetune, epochs: 1, lr: 0.001, batch_size: 4}
"""


def test_stages_write_the_file_the_command_writes(tmp_path, capsys):
    folder, data = make_model_dir("gpt2", tmp_path / "gpt2")  # dropout 0.1: seeds matter
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    cli = tmp_path / "cli.cnn"
    code, _, err = run(capsys, "compress", folder, "--recipe", recipe, "--data", data,
                       "-o", cli)
    assert code == 0, err
    names = []

    def stage(name, fn):
        names.append(name)
        return fn()

    torch.manual_seed(123)  # the caller's generator: neither used nor changed
    state = torch.random.get_rng_state()
    staged = tmp_path / "stages.cnn"
    any_model._compress_stages(str(folder), str(data), str(recipe), str(staged), stage)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert names == ["load", "targets", "step 0: prune", "step 1: cws", "step 2: finetune",
                     "bake + save"]
    assert staged.read_bytes() == cli.read_bytes()
    other = tmp_path / "seed1.cnn"
    any_model._compress_stages(str(folder), str(data), str(recipe), str(other), stage, seed=1)
    assert other.read_bytes() != cli.read_bytes()  # the seed reaches the dropout
