"""Recipes: validation before any work, YAML/JSON files, overrides, compress_ reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from compactnn import train, zoo
from compactnn.coding import entropy_bits
from compactnn.transforms import (
    CWS,
    ECSQ,
    PWS,
    UQ,
    FineTune,
    Prune,
    Recipe,
    RecipeError,
    SharedWeights,
    Step,
    check_recipe,
    compress_,
    layer_report,
    load_recipe,
    share_layers_,
)
from compactnn.transforms.quantize import kmeans_1d


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return zoo.build("lenet300", in_features=64)


@pytest.fixture(scope="module")
def digits():
    return zoo.load_dataset("digits")


@pytest.mark.parametrize("steps,match", [
    ([{"method": "sparsify", "p": 50}], "unknown method 'sparsify'"),
    ([{"p": 50}], "unknown method None"),
    ([{"method": "prune", "p": 100}], r"\[0, 100\)"),
    ([{"method": "prune", "p": -1}], r"\[0, 100\)"),
    ([{"method": "prune", "p": "90"}], r"\[0, 100\)"),
    ([{"method": "prune"}], "missing"),
    ([{"method": "prune", "p": 90, "scope": "row"}], "scope"),
    ([{"method": "prune", "p": 90, "schedule": [80, 50]}], "schedule must increase"),
    ([{"method": "prune", "p": 50, "schedule": [80]}], "schedule must increase"),
    ([{"method": "cws", "k": 0}], "k must be an integer >= 1"),
    ([{"method": "uq", "k": 2.5}], "k must be an integer >= 1"),
    ([{"method": "ecsq", "k": True}], "k must be an integer >= 1"),
    ([{"method": "cws", "k": 4, "mode": "fast"}], "cws mode"),
    ([{"method": "cws", "k": 4, "mode": "sklearn", "init": "quantile"}], "cws init"),
    ([{"method": "pws", "k": 4, "shared": "yes"}], "shared must be"),
    ([{"method": "pws", "k": 4, "bits": 2}], "unknown field"),
    ([{"method": "finetune", "lr": 0}], "lr must be a positive"),
    ([{"method": "finetune", "epochs": 1, "layers": ["0"]}], "no layers or overrides"),
    ([{"method": "cws", "k": 4, "layers": ["fc9"]}], "no Linear/Conv2d layer named 'fc9'"),
    ([{"method": "cws", "k": 4, "layers": "1"}], "list of layer names"),
    ([{"method": "cws", "k": 4, "overrides": {"9": {"k": 2}}}], "override for '9'"),
    ([{"method": "cws", "k": 4, "overrides": {"1": {"shared": True}}}], "cannot override shared"),
    ([{"method": "prune", "p": 50, "overrides": {"1": {"scope": "global"}}}], "cannot override"),
    ([{"method": "cws", "k": 4}, {"method": "prune", "p": 50}], "prune after weight sharing"),
    ([{"method": "finetune"}], "needs train_data"),
    ([{"method": "prune", "p": 80, "schedule": [50]}], "needs train_data"),
    ("prune", "recipe file 'prune' not found"),
    ({"method": "prune", "p": 50}, "list of steps"),
])
def test_bad_recipes_fail_before_any_work(steps, match):
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # a valid first step proves that nothing ran before the error
    with pytest.raises(RecipeError, match=match):
        recipe = steps if not isinstance(steps, list) else [{"method": "prune", "p": 50}, *steps]
        compress_(model, recipe)
    after = model.state_dict()
    assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)


def test_recipe_error_is_a_value_error():
    assert issubclass(RecipeError, ValueError)
    with pytest.raises(ValueError):
        CWS(k=0)
    with pytest.raises(RecipeError, match="prune after weight sharing"):
        model = small_model()
        share_layers_({"1": model[1]}, lambda v: kmeans_1d(v, 2))
        check_recipe([Prune(50)], model)


def test_yaml_and_json_files_and_round_trip(tmp_path):
    steps = [
        {"method": "prune", "p": 80, "scope": "global", "schedule": [50],
         "finetune": {"epochs": 1, "lr": 0.001}, "overrides": {"5": {"p": 60}}},
        {"method": "finetune", "epochs": 1},
        {"method": "cws", "k": 8, "layers": ["1", "3"],
         "overrides": {"3": {"k": 4, "calibrate": 32}}},
        {"method": "ecsq", "k": 4, "layers": ["5"], "calibrate": 64, "damp": 0.05},
    ]
    (tmp_path / "r.json").write_text(json.dumps(steps))
    yaml_text = """
steps:
  - {method: prune, p: 80, scope: global, schedule: [50], finetune: {epochs: 1, lr: 0.001},
     overrides: {"5": {p: 60}}}
  - {method: finetune, epochs: 1}
  - method: cws
    k: 8
    layers: ["1", "3"]
    overrides: {"3": {k: 4, calibrate: 32}}
  - {method: ecsq, k: 4, layers: ["5"], calibrate: 64, damp: 0.05}
"""
    (tmp_path / "r.yaml").write_text(yaml_text)
    a, b = load_recipe(tmp_path / "r.json"), load_recipe(tmp_path / "r.yaml")
    assert a == b == Recipe.from_list(steps)
    assert Recipe.from_list(a.to_list()) == a
    assert json.loads(json.dumps(a.to_list())) == a.to_list()
    assert a.steps[0].config.finetune == FineTune(epochs=1, lr=0.001)
    assert dict(a.steps[2].overrides)["3"] == CWS(k=4, calibrate=32)
    assert (a.steps[3].config.calibrate, a.steps[3].config.damp) == (64, 0.05)
    (tmp_path / "r.txt").write_text("[]")
    with pytest.raises(RecipeError, match="must end in"):
        load_recipe(tmp_path / "r.txt")
    (tmp_path / "bad.json").write_text('{"method": "prune"}')
    with pytest.raises(RecipeError, match="list of steps"):
        load_recipe(tmp_path / "bad.json")


def test_compress_with_overrides_schedule_and_report(tmp_path, digits):
    tr, te = digits
    model = small_model()
    train.fit(model, tr, epochs=2, batch_size=64, progress=False)
    path = tmp_path / "recipe.yaml"
    path.write_text("""
- {method: prune, p: 80, scope: global, schedule: [50, 70], finetune: {epochs: 1, lr: 0.001},
   overrides: {"5": {p: 50}}}
- {method: finetune, epochs: 1, lr: 0.001}
- {method: cws, k: 16, layers: ["1", "3"], overrides: {"3": {k: 4}}}
- {method: uq, k: 3, layers: ["5"]}
- {method: finetune, epochs: 1, lr: 0.0003}
""")
    report = compress_(model, path, tr, te)
    stats = {s.name: s for s in report.layers}
    assert list(stats) == ["1", "3", "5"]
    assert stats["5"].sparsity >= 0.5 - 1e-9  # override: per layer, outside the global pool
    glob = (stats["1"].weights + stats["3"].weights)
    pooled_nonzero = stats["1"].nonzero + stats["3"].nonzero
    assert abs(1 - pooled_nonzero / glob - 0.8) < 1e-3
    assert stats["1"].distinct <= 17 and stats["3"].distinct <= 5 and stats["5"].distinct <= 4
    assert [d for d, _ in report.history] == [
        "step 0 prune p=80 global", "step 1 finetune 1 epoch(s)", "step 2 cws k=16",
        "step 3 uq k=3", "step 4 finetune 1 epoch(s)"]
    assert report.history[-1][1]["accuracy"] > 0.7
    for name, layer in zip(("1", "3", "5"), (model[1], model[3], model[5]), strict=True):
        assert type(layer.weight) is nn.Parameter  # baked
        w = layer.weight.detach().numpy()
        s = stats[name]
        assert s.entropy_bits == pytest.approx(entropy_bits(w))
        assert s.distinct == np.unique(w.view(np.uint32)).size
        assert s.nonzero == np.count_nonzero(w)
    assert report.bits_per_weight == pytest.approx(report.entropy_bits / report.weights)
    table = report.table()
    assert "total" in table and "after step 4 finetune" in table


def test_bake_false_keeps_constraints_and_shared_books(digits):
    tr, _ = digits
    model = small_model()
    report = compress_(model, [Step(Prune(70)), Step(ECSQ(k=8, shared=True)),
                               FineTune(epochs=1)], tr, bake=False)
    cons = [m.parametrizations.weight[0] for m in (model[1], model[3], model[5])]
    assert all(isinstance(c, SharedWeights) for c in cons)
    assert cons[0].codebook is cons[1].codebook is cons[2].codebook
    assert cons[0].codebook.numel() <= 8
    assert all(s.distinct <= 9 for s in report.layers)
    n = sum(p.numel() for p in model.parameters())  # the dense weights are not kept
    biases = sum(m.bias.numel() for m in (model[1], model[3], model[5]))
    assert n == cons[0].codebook.numel() + biases


@pytest.mark.parametrize("config", [CWS(k=4), CWS(k=4, mode="sklearn"), PWS(k=4), UQ(k=4),
                                    ECSQ(k=4)])
def test_each_method_on_a_conv_model(config):
    torch.manual_seed(0)
    model = zoo.build("vgg_small", widths=(8, "M", 16, "M"), hidden=16)
    before = model(torch.randn(2, 1, 12, 12)).shape
    report = compress_(model, [Prune(50, scope="global"), config])
    assert model(torch.randn(2, 1, 12, 12)).shape == before
    assert [s.kind for s in report.layers] == ["conv", "conv", "linear", "linear"]
    assert report.layers[0].shape == (8, 9)
    assert all(s.distinct <= 5 for s in report.layers)
    assert report.sparsity >= 0.5 - 1e-9


def test_layer_report_on_a_dense_model():
    model = small_model()
    r = layer_report(model)
    assert [s.name for s in r.layers] == ["1", "3", "5"]
    assert r.sparsity == 0 and r.bits_per_weight > 10


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_override_p_zero_leaves_the_layer_alone(digits, scope):
    """A layer override ``p: 0`` on a scheduled prune step: that layer is not pruned (no
    mask, weights untouched), the others follow the schedule."""
    tr, _ = digits
    model = small_model()
    before = model[3].weight.detach().clone()
    report = compress_(model, [{"method": "prune", "p": 80, "scope": scope,
                                "schedule": [50, 70], "finetune": {"epochs": 0},
                                "overrides": {"3": {"p": 0}}}], tr, bake=False)
    assert not torch.nn.utils.parametrize.is_parametrized(model[3], "weight")
    assert torch.equal(model[3].weight.detach(), before)
    stats = {s.name: s for s in report.layers}
    assert stats["3"].sparsity == 0
    pooled = [stats[n] for n in ("1", "5")]
    assert abs(1 - sum(s.nonzero for s in pooled) / sum(s.weights for s in pooled) - 0.8) < 0.01


def test_step_p_zero_still_masks_exact_zeros(digits):
    """Only a layer override ``p: 0`` leaves a layer out; a step's own ``p: 0`` keeps
    pruning what is already exactly zero."""
    tr, _ = digits
    model = small_model()
    with torch.no_grad():
        model[3].weight[0, :5] = 0
    compress_(model, [{"method": "prune", "p": 0, "layers": ["3"]}], tr, bake=False)
    assert torch.nn.utils.parametrize.is_parametrized(model[3], "weight")
    assert int((model[3].weight == 0).sum()) == 5
