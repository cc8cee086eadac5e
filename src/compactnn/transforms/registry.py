"""The recipe-step registry: one entry per step config type (torchao style).

A step config is a frozen dataclass with a ``method`` class attribute (its name in
recipe files). ``register_step(Config, handler=..., check=..., describe=...)`` makes it
a recipe method: ``Recipe`` parses ``{method: <name>, ...}`` into it, ``check_recipe``
calls its ``check`` and ``compress_`` its ``handler``, all looked up by the config's type
(``step_type``), so adding a method is one module under ``transforms/steps/`` plus its
import line in ``transforms/steps/__init__.py`` (``docs/architecture.md``).

The hooks see two small contexts: ``Plan`` (the state ``check_recipe`` keeps while it
walks the steps without changing the model) and ``Run`` (the model being compressed).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from torch import nn

from compactnn.transforms.errors import RecipeError
from compactnn.transforms.prune import layers_of

Step = Any  # a ``compactnn.transforms.recipe.Step`` (that module builds on this one)

__all__ = ["StepType", "Plan", "Run", "METHODS", "register_step", "unregister_step", "step_type",
           "by_method"]


@dataclass
class Plan:
    """What ``check_recipe`` knows before step ``i``: the model's compressible layers
    (``layers``, as they are now), the names later steps may still select (``names``:
    a step that replaces layers removes them), the layers already weight-shared,
    constrained (pruned, masked or shared) or block-masked, and ``train_data``."""

    model: nn.Module
    layers: dict[str, nn.Module]
    names: list[str]
    train_data: Any
    shared: set[str] = field(default_factory=set)
    constrained: set[str] = field(default_factory=set)
    masked: set[str] = field(default_factory=set)


@dataclass
class Run:
    """The model ``compress_`` works on, its data, whether to show progress bars, and
    where forward passes and solves run: ``device`` (``None``: where the model is; the
    model is moved there for a pass and back, so it stays on its own device between
    steps), ``autocast`` (``"bf16"``, ``"fp16"`` or None) for the forward passes and
    ``num_workers`` (``DataLoader`` workers while fine-tuning); ``teacher``: a frozen
    copy of the model as ``compress_`` received it, kept when a step distills from it
    (``FineTune.distill``), else None."""

    model: nn.Module
    train_data: Any
    progress: bool = False
    device: Any = None
    autocast: str | None = None
    num_workers: int = 0
    teacher: nn.Module | None = None

    @property
    def layers(self) -> dict[str, nn.Module]:
        """The model's ``nn.Linear`` / ``nn.Conv2d`` layers by name, as they are now."""
        return layers_of(self.model)


def _no_check(plan: Plan, i: int, step: Step, chosen: list[str]) -> None:
    return None


def _no_data(step: Step) -> str | None:
    return None


@dataclass(frozen=True)
class StepType:
    """A registered step config type and its hooks.

    - ``handler(run, step, names)``: apply the step to the layers ``names`` (module
      order) of ``run.model``, in place.
    - ``check(plan, i, step, chosen)``: validate step ``i`` for the layers it selects,
      raising ``RecipeError``, and record its effect in ``plan``; may return a narrower
      list of layers.
    - ``describe(config)``: a short text for reports (``"mpd blocks=4"``).
    - ``needs_data(step)``: why the step needs ``train_data`` (``"fine-tunes"``), or
      None; checked before the layers are selected.
    - ``whole_model``: the step takes no ``layers`` or ``overrides`` (fine-tuning).
    - ``overridable``: the fields a per-layer override may set (None: all of them);
      ``override(config, name, fields)``: layer ``name``'s config (default: the step's
      config with ``fields`` replaced).
    - ``renamed``: old field name -> current one; recipes may still use the old name.
    """

    config: type
    handler: Callable[[Run, Step, list[str]], None]
    check: Callable[[Plan, int, Step, list[str]], list[str] | None] = _no_check
    describe: Callable[[Any], str] = repr
    needs_data: Callable[[Step], str | None] = _no_data
    whole_model: bool = False
    overridable: frozenset[str] | None = None
    override: Callable[[Any, str, dict[str, Any]], Any] | None = None
    renamed: Mapping[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.config.method

    def allowed_overrides(self) -> set[str]:
        """Field names a per-layer override may set."""
        names = {f.name for f in fields(self.config)}
        return names if self.overridable is None else names & set(self.overridable)


_BY_TYPE: dict[type, StepType] = {}
_BY_METHOD: dict[str, StepType] = {}
_CONFIGS: dict[str, type] = {}
METHODS = MappingProxyType(_CONFIGS)
"""Method name -> config type of every registered step, in registration order (live)."""


def register_step(config: type, *, handler: Callable[[Run, Step, list[str]], None],
                  check: Callable[[Plan, int, Step, list[str]], list[str] | None] = _no_check,
                  describe: Callable[[Any], str] = repr,
                  needs_data: Callable[[Step], str | None] = _no_data,
                  whole_model: bool = False, overridable: Collection[str] | None = None,
                  override: Callable[[Any, str, dict[str, Any]], Any] | None = None,
                  renamed: Mapping[str, str] | None = None) -> StepType:
    """Register ``config`` (a frozen dataclass with a ``method`` class attribute) as a
    recipe method with its hooks (see ``StepType``); returns the entry. A method name
    or config type can be registered once."""
    method = getattr(config, "method", None)
    if not isinstance(config, type) or not isinstance(method, str) or not method:
        raise TypeError("a step config must be a dataclass type with a 'method' name")
    if config in _BY_TYPE or method in _BY_METHOD:
        raise ValueError(f"step method {method!r} ({config.__name__}) is already registered")
    entry = StepType(config, handler, check, describe, needs_data, whole_model,
                     None if overridable is None else frozenset(overridable), override,
                     dict(renamed or {}))
    _BY_TYPE[config] = entry
    _BY_METHOD[method] = entry
    _CONFIGS[method] = config
    return entry


def unregister_step(config: type) -> None:
    """Remove a registered step config type (tests register temporary ones)."""
    entry = _BY_TYPE.pop(config)
    del _BY_METHOD[entry.method], _CONFIGS[entry.method]


def step_type(config: Any) -> StepType:
    """The registry entry of a step config (instance or type); ``RecipeError`` if its
    type is not registered."""
    cls = config if isinstance(config, type) else type(config)
    entry = _BY_TYPE.get(cls)
    if entry is None:
        raise RecipeError(f"a step's config must be one of {', '.join(_BY_METHOD)}, "
                          f"got {cls.__name__}")
    return entry


def by_method(method: Any) -> StepType:
    """The registry entry named ``method`` in recipes; ``RecipeError`` if unknown."""
    entry = _BY_METHOD.get(method) if isinstance(method, str) else None
    if entry is None:
        raise RecipeError(f"unknown method {method!r}; known: {', '.join(_BY_METHOD)}")
    return entry
