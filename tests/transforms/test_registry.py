"""The recipe-step registry: a config type registered in a test is a recipe method end
to end (parse, check, run, report, round trip); unknown types and names are
RecipeErrors; the per-method entry points share one shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from compactnn import zoo
from compactnn.transforms import (
    CWS,
    METHODS,
    MPD,
    Permute,
    Prune,
    Recipe,
    RecipeError,
    Step,
    check_recipe,
    compress_,
    mpd_,
    permute_,
    prune_,
    register_step,
    share_weights_,
    step_type,
)
from compactnn.transforms.registry import unregister_step


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return zoo.build("lenet300", in_features=64)  # layers "1" 64->300, "3", "5" 100->10


@dataclass(frozen=True)
class Scale:
    """A toy method: multiply the chosen layers' weights by ``factor``."""

    factor: float = 2.0
    method: ClassVar[str] = "scale"

    def __post_init__(self) -> None:
        if self.factor == 0:
            raise RecipeError("scale factor must not be 0")


@pytest.fixture
def scale_step():
    calls = []

    def handler(run, step, names):
        calls.append(list(names))
        with torch.no_grad():
            for n in names:
                run.layers[n].weight.mul_(step.config_for(n).factor)

    def check(plan, i, step, chosen):
        late = [n for n in chosen if n in plan.constrained]
        if late:
            raise RecipeError(f"step {i} (scale): {', '.join(late)} are constrained")

    entry = register_step(Scale, handler=handler, check=check,
                          describe=lambda c: f"scale x{c.factor:g}")
    yield entry, calls
    unregister_step(Scale)


def test_a_registered_config_is_a_method_end_to_end(scale_step):
    entry, calls = scale_step
    assert step_type(Scale()) is entry and METHODS["scale"] is Scale
    steps = [{"method": "scale", "factor": 3.0, "layers": ["1", "3"],
              "overrides": {"3": {"factor": -1.0}}}]
    recipe = Recipe.from_list(steps)
    assert recipe.to_list() == steps and Recipe.from_list(recipe.to_list()) == recipe
    model, ref = small_model(), small_model()
    report = compress_(model, recipe, val_data=zoo.load_dataset("digits")[1])
    assert calls == [["1", "3"]]
    assert torch.equal(model[1].weight, 3 * ref[1].weight)
    assert torch.equal(model[3].weight, -ref[3].weight)
    assert torch.equal(model[5].weight, ref[5].weight)
    assert [s.name for s in report.layers] == ["1", "3"]
    assert [d for d, _ in report.history] == ["step 0 scale x3"]
    # its check runs with the built-in steps' state, before any work
    model = small_model()
    before = model[1].weight.detach().clone()
    with pytest.raises(RecipeError, match=r"step 1 \(scale\): 1, 3, 5 are constrained"):
        compress_(model, [Prune(50), Scale()])
    assert torch.equal(model[1].weight, before) and not hasattr(model[1], "parametrizations")
    with pytest.raises(RecipeError, match="unknown field"):
        Recipe.from_list([{"method": "scale", "gain": 2}])


def test_registering_twice_is_refused(scale_step):
    with pytest.raises(ValueError, match="already registered"):
        register_step(Scale, handler=lambda run, step, names: None)


def test_unknown_step_types_and_names_are_recipe_errors():
    @dataclass(frozen=True)
    class Unregistered:
        method: ClassVar[str] = "unregistered"

    with pytest.raises(RecipeError, match="a step's config must be one of .*got Unregistered"):
        Step(Unregistered())
    with pytest.raises(RecipeError, match="got Unregistered"):
        compress_(small_model(), [Unregistered()])
    with pytest.raises(RecipeError, match="got dict"):
        step_type({"method": "prune"})
    with pytest.raises(RecipeError, match="unknown method 'unregistered'; known: "):
        Recipe.from_list([{"method": "unregistered"}])
    assert "unregistered" not in METHODS
    assert {"mpd", "permute", "prune", "cws", "pws", "uq", "ecsq", "finetune"} <= set(METHODS)


def test_per_method_entry_points_share_one_shape():
    model, ref = small_model(), small_model()
    report = prune_(model, Prune(p=50), layers=["1"])
    assert [s.name for s in report.layers] == ["1"] and report.sparsity == 0.5
    assert hasattr(model[1], "parametrizations")  # bake=False: training keeps the mask
    report = share_weights_(model, CWS(k=4), layers=["1", "3"], bake=True)
    assert [s.distinct for s in report.layers] == [5, 4]  # 4 values and the pruned zeros
    assert not hasattr(model[1], "parametrizations")
    compress_(ref, [Step(Prune(p=50), ("1",)), Step(CWS(k=4), ("1", "3"))])
    for i in (1, 3, 5):
        assert torch.equal(model[i].weight, ref[i].weight)
    net = small_model()
    assert [s.name for s in mpd_(net, MPD(blocks=2, last_dense=True)).layers] == ["1", "3"]
    net = small_model()
    assert [s.name for s in permute_(net, Permute(groups=2)).layers] == ["1", "3"]


@pytest.mark.parametrize("call,match", [
    (lambda m: prune_({"1": m[1]}, Prune(p=50)), "prune_layers_"),
    (lambda m: share_weights_({"1": m[1]}, CWS(k=2)), "share_layers_"),
    (lambda m: prune_(m, 50), "prune_ takes a Prune config, got 50"),
    (lambda m: share_weights_(m, Prune(p=50)), "takes a Sharing config"),
    (lambda m: mpd_(m, CWS(k=2)), "mpd_ takes a MPD config"),
    (lambda m: permute_(m, MPD(blocks=2)), "permute_ takes a Permute config"),
])
def test_entry_points_refuse_other_arguments(call, match):
    with pytest.raises(RecipeError, match=match):
        call(small_model())


def test_check_recipe_plans_without_changing_the_model():
    model = small_model()
    plan = check_recipe([MPD(blocks=2, last_dense=True), Prune(p=50)], model)
    assert [names for _, names in plan] == [["1", "3"], ["1", "3", "5"]]
    assert not any(hasattr(m, "block_mask") for m in model.modules())
