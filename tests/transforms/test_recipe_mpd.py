"""MPD block masks as a recipe step: validation before any work, composition with
pruning, weight sharing and fine-tuning, JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compactnn import zoo
from compactnn.formats.blockdiag import BlockDiag
from compactnn.transforms import (
    MPD,
    BlockMask,
    MPDConfig,
    Recipe,
    RecipeError,
    block_mask_,
    check_recipe,
    compress_,
    prune_layers_,
)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return zoo.build("lenet300", in_features=64)  # layers "1" 64->300, "3", "5" 100->10


@pytest.fixture(scope="module")
def digits():
    return zoo.load_dataset("digits")


def outside_bits(layer: nn.Module) -> np.ndarray:
    """Bit patterns of the weights outside the layer's block mask."""
    W = layer.weight.detach().reshape(layer.weight.shape[0], -1).numpy()
    return W.view(np.uint32)[~layer.block_mask.dense()]


@pytest.mark.parametrize("steps,match", [
    ([{"method": "mpd", "blocks": 0}], "mpd blocks must be an integer >= 1"),
    ([{"method": "mpd", "blocks": True}], "mpd blocks must be an integer >= 1"),
    ([{"method": "mpd", "blocks": "4"}], "mpd blocks must be an integer >= 1"),
    ([{"method": "mpd", "blocks": 2.5}], "mpd blocks must be an integer >= 1"),
    ([{"method": "mpd"}], "missing"),
    ([{"method": "mpd", "blocks": 4, "seed": -1}], "mpd seed must be an integer >= 0"),
    ([{"method": "mpd", "blocks": 4, "seed": 2**63 - 2}],
     r"seed must be an integer in \[0, 2\*\*63\)"),
    ([{"method": "mpd", "blocks": 4, "rescale": "yes"}], "rescale_init must be true or false"),
    ([{"method": "mpd", "blocks": 4, "rescale_init": "yes"}], "rescale_init must be true or false"),
    ([{"method": "mpd", "blocks": 4, "rescale": True, "rescale_init": True}], "old name"),
    ([{"method": "mpd", "blocks": 4, "n": 2}], "unknown field"),
    ([{"method": "mpd", "blocks": 301}], r"layer '1'.*blocks .*must be an integer in \[1, 300\]"),
    ([{"method": "mpd", "blocks": 101, "layers": ["3", "5"]}], r"layer '5'.*\[1, 100\]"),
    ([{"method": "mpd", "blocks": 4, "overrides": {"3": {"blocks": 500}}}], "layer '3'"),
    ([{"method": "mpd", "blocks": 4, "layers": ["fc"]}], "no Linear/Conv2d layer named 'fc'"),
    ([{"method": "prune", "p": 50}, {"method": "mpd", "blocks": 4}],
     "mpd after pruning or weight sharing on 1, 3, 5"),
    ([{"method": "cws", "k": 4, "layers": ["3"]}, {"method": "mpd", "blocks": 4}],
     "mpd after pruning or weight sharing on 3"),
    ([{"method": "mpd", "blocks": 2, "layers": ["3"]}, {"method": "mpd", "blocks": 4}],
     "3 already carry a block mask"),
    ([{"method": "mpd", "blocks": 4}, {"method": "finetune"}], "needs train_data"),
])
def test_bad_mpd_steps_fail_before_any_work(steps, match):
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RecipeError, match=match):
        compress_(model, steps)
    after = model.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)
    assert not any(hasattr(m, "block_mask") for m in model.modules())


def test_mpd_on_constrained_or_grouped_layers_is_refused():
    model = small_model()
    block_mask_(model[3], 2, seed=0)
    with pytest.raises(RecipeError, match="3 already carry a block mask"):
        check_recipe([MPD(blocks=4)], model)
    model = small_model()
    prune_layers_({"1": model[1]}, 50)
    with pytest.raises(RecipeError, match="mpd after pruning or weight sharing on 1"):
        check_recipe([MPD(blocks=4)], model)
    conv = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2))
    with pytest.raises(RecipeError, match="groups=1"):
        check_recipe([MPD(blocks=2)], conv)


def test_mpd_steps_match_block_mask_and_round_trip():
    steps = [{"method": "mpd", "blocks": 4, "seed": 3, "layers": ["1", "3"],
              "overrides": {"3": {"blocks": 5, "rescale_init": True}}}]
    recipe = Recipe.from_list(steps)
    assert recipe.to_list() == [{"method": "mpd", "blocks": 4, "seed": 3, "rescale_init": False,
                                 "last_dense": False, "layers": ["1", "3"],
                                 "overrides": {"3": {"blocks": 5, "rescale_init": True}}}]
    assert Recipe.from_list(recipe.to_list()) == recipe
    # the old key ``rescale`` (recipe files before the one MPD config) reads the same
    old = [{"method": "mpd", "blocks": 4, "seed": 3, "rescale": False, "layers": ["1", "3"],
            "overrides": {"3": {"blocks": 5, "rescale": True}}}]
    assert Recipe.from_list(old) == recipe
    model, ref = small_model(), small_model()
    report = compress_(model, recipe)
    assert [s.name for s in report.layers] == ["1", "3"]
    # the step's i-th layer gets seed + i; an override replaces the config for its layer
    assert model[1].block_mask == BlockMask((300, 64), 4, 3)
    assert model[3].block_mask == BlockMask((100, 300), 5, 4)
    assert not hasattr(model[5], "block_mask")
    block_mask_(ref[1], 4, 3)
    block_mask_(ref[3], 5, 4, rescale_init=True)
    for i in (1, 3):
        assert torch.equal(model[i].weight, ref[i].weight)
        assert not np.any(outside_bits(model[i]))
    assert torch.equal(model[5].weight, small_model()[5].weight)
    assert report.layers[0].sparsity == pytest.approx(0.75)


def test_mpd_composes_with_pruning_sharing_and_finetuning(digits):
    train, test = digits
    model = small_model()
    recipe = [
        {"method": "mpd", "blocks": 4, "seed": 1, "rescale": True, "layers": ["1", "3"]},
        {"method": "finetune", "epochs": 4, "lr": 0.003},
        {"method": "prune", "p": 90, "layers": ["1", "3"]},
        {"method": "cws", "k": 8},
        {"method": "finetune", "epochs": 2, "lr": 0.001},
    ]
    report = compress_(model, recipe, train, test)
    assert [d for d, _ in report.history][0] == "step 0 mpd blocks=4"
    assert report.history[-1][1]["accuracy"] > 0.85
    for s, name in zip(report.layers[:2], ("1", "3"), strict=True):
        layer = model.get_submodule(name)
        assert s.sparsity == pytest.approx(0.9, abs=1e-3)  # 75% masked, then pruned to 90%
        assert s.distinct <= 9  # 8 shared values and zero
        assert not np.any(outside_bits(layer))  # fine-tuning kept the masks
        W = layer.weight.detach().numpy()
        M = BlockDiag.from_masked(W, 4, layer.block_mask.seed)  # seeded blocks hold all
        assert np.array_equal(M.to_dense().view(np.uint32), W.view(np.uint32))
    assert report.layers[2].sparsity == 0  # layer 5: only weight-shared


def test_mpd_configs_validate_directly():
    with pytest.raises(RecipeError):
        MPD(blocks=0)
    assert MPD(blocks=3).seed == 0
    assert MPDConfig is MPD  # one MPD config: the old name is the same class
    with pytest.raises(TypeError):
        MPD(3, 1)  # everything after blocks is keyword-only (the old classes' orders differed)
    model = small_model()
    assert len(check_recipe([MPD(blocks=100)], model)[0][1]) == 3
