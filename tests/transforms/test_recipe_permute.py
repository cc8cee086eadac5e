"""The permute step: recipes, validation before any work, equivalence with the layers
``permute_`` builds, composition with fine-tuning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compactnn import zoo
from compactnn.nn.permuted import PermutedLinear
from compactnn.transforms import (
    MPD,
    Permute,
    PermuteConfig,
    Recipe,
    RecipeError,
    compress_,
    permuted_layer,
)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return zoo.build("lenet300", in_features=64)  # layers "1" 64->300, "3", "5" 100->10


@pytest.mark.parametrize("steps,match", [
    ([{"method": "permute", "groups": 0}], "permute groups must be an integer >= 1"),
    ([{"method": "permute", "kind": "random"}], "permute kind must be one of"),
    ([{"method": "permute", "last_dense": 1}], "last_dense must be true or false"),
    ([{"method": "permute", "seed": -1}], r"permute seed must be an integer in \[0, 2\*\*63\)"),
    ([{"method": "permute", "layers": ["5"]}], "no nn.Linear layer to permute"),
    ([{"method": "prune", "p": 50}, {"method": "permute"}], "already masked, pruned"),
    ([{"method": "permute"}, {"method": "cws", "k": 4, "layers": ["1"]}],
     "no Linear/Conv2d layer named '1'; layers: 5"),
    ([{"method": "permute", "overrides": {"5": {"groups": 2}}}], "override for '5'"),
    ([{"method": "permute", "overrides": {"1": {"last_dense": False}}}], "cannot override"),
    ([{"method": "permute"}, {"method": "finetune"}], "needs train_data"),
])
def test_bad_permute_steps_fail_before_any_work(steps, match):
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RecipeError, match=match):
        compress_(model, steps)
    after = model.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)
    assert not any(isinstance(m, PermutedLinear) for m in model.modules())


def test_permute_refuses_convolutions_by_name_and_skips_them_by_default():
    torch.manual_seed(0)
    model = zoo.build("vgg_small", widths=(8, "M", 16, "M"), hidden=16)
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    conv = [n for n in names if isinstance(model.get_submodule(n), nn.Conv2d)]
    with pytest.raises(RecipeError, match="are not nn.Linear layers"):
        compress_(model, [{"method": "permute", "layers": conv[:1]}])
    report = compress_(model, [Permute(last_dense=False)])
    assert [s.name for s in report.layers] == [n for n in names if n not in conv]
    assert model(torch.randn(2, 1, 12, 12)).shape == (2, 10)


def test_permute_step_matches_the_layer_conversion_and_round_trips():
    steps = [{"method": "permute", "groups": 2, "kind": "seeded", "seed": 4,
              "overrides": {"3": {"groups": 3}}}]
    recipe = Recipe.from_list(steps)
    assert recipe.to_list() == [{"method": "permute", "groups": 2, "kind": "seeded", "seed": 4,
                                 "last_dense": True, "overrides": {"3": {"groups": 3}}}]
    assert Recipe.from_list(recipe.to_list()) == recipe
    assert PermuteConfig is Permute  # one config for the recipe step and permute_
    model, ref = small_model(), small_model()
    report = compress_(model, recipe)
    assert [s.name for s in report.layers] == ["1", "3"] and type(model[5]) is nn.Linear
    for i, groups, seed in ((1, 2, 4), (3, 3, 5)):  # the step's i-th layer: seed + i
        want = permuted_layer(ref[i], groups, "seeded", seed)
        assert (model[i].seed, model[i].groups) == (seed, groups)
        assert torch.equal(model[i].weight, want.weight)
    x = torch.randn(3, 64)
    assert model(x).shape == (3, 10)


def test_permute_then_finetune_then_share_the_dense_layer():
    train, test = zoo.load_dataset("digits")
    model = small_model()
    recipe = [{"method": "mpd", "blocks": 2, "layers": ["5"]},
              {"method": "permute", "groups": 4, "kind": "data"},
              {"method": "finetune", "epochs": 2, "lr": 0.003},
              {"method": "cws", "k": 8}]
    report = compress_(model, recipe, train, test)
    assert [s.name for s in report.layers] == ["1", "3", "5"]
    assert report.layers[2].distinct <= 9 and report.layers[2].sparsity >= 0.5
    assert [d for d, _ in report.history][:2] == ["step 0 mpd blocks=2",
                                                  "step 1 permute groups=4 data"]
    assert report.history[-1][1]["accuracy"] > 0.5


def test_mpd_last_dense_leaves_the_last_layer():
    model = small_model()
    report = compress_(model, [MPD(blocks=4, last_dense=True)])
    assert [s.name for s in report.layers] == ["1", "3"]
    assert not hasattr(model[5], "block_mask")
