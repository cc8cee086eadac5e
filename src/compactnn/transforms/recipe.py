"""Recipes as data: ``Step``, ``Recipe`` and their YAML/JSON form.

A recipe is a list of steps; each step is one registered config (``MPD``, ``Permute``,
``Prune``, ``CWS``, ``PWS``, ``UQ``, ``ECSQ``, ``FineTune``: ``transforms/steps/``) plus
an optional ``layers`` filter (names or ``fnmatch`` patterns of ``nn.Linear`` /
``nn.Conv2d`` modules; default: all) and optional per-layer ``overrides`` (field values
that differ for one named layer). As data::

    - {method: mpd, blocks: 4, seed: 0, layers: ["1", "3"]}
    - {method: prune, p: 90, scope: global, schedule: [50, 80],
       finetune: {epochs: 1, lr: 0.001}, overrides: {"4": {p: 70}}}
    - {method: finetune, epochs: 2, lr: 0.0003}
    - {method: cws, k: 32, shared: false, layers: ["0", "2"]}
    - {method: uq, k: 4, layers: ["4"], calibrate: 1024}
    - {method: finetune, epochs: 1}

Parsing checks each config's fields (``RecipeError``); ``check_recipe``
(``transforms/plan.py``) checks the recipe against a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compactnn.transforms.errors import RecipeError
from compactnn.transforms.registry import by_method, step_type

__all__ = ["Step", "Recipe", "load_recipe", "as_recipe", "build_config", "config_fields"]


def build_config(cls: type, fields: Mapping[str, Any]):
    """``cls(**fields)`` for a registered step config, with ``RecipeError`` naming an
    unknown or missing field; lists become tuples, old field names (``renamed``) are
    read as the current ones."""
    fields = dict(fields)
    for old, new in step_type(cls).renamed.items():
        if old in fields:
            if new in fields:
                raise RecipeError(f"method {cls.method!r}: {old!r} is the old name of {new!r}; "
                                  "give only one")
            fields[new] = fields.pop(old)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise RecipeError(f"unknown field(s) {', '.join(unknown)} for method {cls.method!r}; "
                          f"allowed: {', '.join(sorted(names))}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        return cls(**fields)
    except TypeError as e:  # a required field is missing
        raise RecipeError(f"method {cls.method!r}: {e}") from None


def config_fields(config) -> dict[str, Any]:
    """A config's fields as JSON-ready values (nested configs as dicts, tuples as lists)."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = config_fields(v) if dataclasses.is_dataclass(v) else (
            list(v) if isinstance(v, tuple) else v)
    return out


@dataclass(frozen=True)
class Step:
    """One recipe step: a config, an optional layer filter and per-layer overrides
    (``overrides`` holds ``(layer name, full config for that layer)`` pairs)."""

    config: Any
    layers: tuple[str, ...] | None = None
    overrides: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        kind = step_type(self.config)
        if self.layers is not None:
            if isinstance(self.layers, str) or not all(isinstance(s, str) for s in self.layers):
                raise RecipeError(f"layers must be a list of layer names, got {self.layers!r}")
            object.__setattr__(self, "layers", tuple(self.layers))
        if kind.whole_model and (self.layers is not None or self.overrides):
            raise RecipeError(f"{kind.method} steps train the whole model: no layers or "
                              "overrides")
        object.__setattr__(self, "overrides", tuple((str(n), c) for n, c in self.overrides))
        for name, cfg in self.overrides:
            if type(cfg) is not type(self.config):
                raise RecipeError(f"override for layer {name!r} must be a "
                                  f"{type(self.config).__name__} config")

    @property
    def method(self) -> str:
        """The step's method name (``"prune"``, ...)."""
        return self.config.method

    def config_for(self, name: str):
        """The config that applies to layer ``name`` (its override, or the step's)."""
        return dict(self.overrides).get(name, self.config)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        """Parse ``{method: ..., <config fields>, layers: [...], overrides: {...}}``."""
        if not isinstance(d, Mapping):
            raise RecipeError(f"a recipe step must be a mapping, got {d!r}")
        d = dict(d)
        kind = by_method(d.pop("method", None))
        layers = d.pop("layers", None)
        overrides = d.pop("overrides", None) or {}
        config = build_config(kind.config, d)
        if not isinstance(overrides, Mapping):
            raise RecipeError(f"overrides must map layer names to fields, got {overrides!r}")
        allowed = kind.allowed_overrides()
        pairs = []
        for name, fields in overrides.items():
            if not isinstance(fields, Mapping):
                raise RecipeError(f"override for layer {name!r} must be a mapping of fields")
            fields = {kind.renamed.get(k, k): v for k, v in fields.items()}
            bad = sorted(set(fields) - allowed)
            if bad:
                raise RecipeError(f"cannot override {', '.join(bad)} for layer {name!r} in a "
                                  f"{kind.method} step; allowed: {', '.join(sorted(allowed))}")
            own = (kind.override(config, str(name), dict(fields)) if kind.override is not None
                   else build_config(kind.config, {**config_fields(config), **fields}))
            pairs.append((str(name), own))
        return cls(config, layers, tuple(pairs))

    def to_dict(self) -> dict[str, Any]:
        """The inverse of ``from_dict`` (JSON-serialisable)."""
        kind = step_type(self.config)
        base = config_fields(self.config)
        out: dict[str, Any] = {"method": kind.method, **base}
        if self.layers is not None:
            out["layers"] = list(self.layers)
        if self.overrides:
            allowed = kind.allowed_overrides()
            out["overrides"] = {
                n: {k: v for k, v in config_fields(c).items() if k in allowed and base[k] != v}
                for n, c in self.overrides}
        return out


@dataclass(frozen=True)
class Recipe:
    """An ordered list of steps; build it with ``Recipe.from_list`` or ``load_recipe``."""

    steps: tuple[Step, ...]

    @classmethod
    def from_list(cls, steps: Iterable[Step | Any | Mapping[str, Any]]) -> Recipe:
        """Steps may be ``Step`` s, bare configs (all layers) or dicts."""
        if isinstance(steps, (str, bytes, Mapping)):
            raise RecipeError("a recipe must be a list of steps")
        out = []
        for s in steps:
            if isinstance(s, Step):
                out.append(s)
            elif isinstance(s, Mapping):
                out.append(Step.from_dict(s))
            else:
                out.append(Step(s))
        return cls(tuple(out))

    def to_list(self) -> list[dict[str, Any]]:
        """JSON/YAML-ready list of step dicts."""
        return [s.to_dict() for s in self.steps]


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read a recipe from ``.json``, ``.yaml`` or ``.yml``: a list of steps, or a mapping
    with a ``steps`` list."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} not found")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        raise RecipeError(f"recipe files must end in .json, .yaml or .yml, got {path.name}")
    if isinstance(data, Mapping):
        data = data.get("steps")
    if not isinstance(data, list):
        raise RecipeError(f"{path}: expected a list of steps (or a mapping with 'steps')")
    return Recipe.from_list(data)


def as_recipe(recipe: Recipe | Iterable | str | os.PathLike) -> Recipe:
    """A ``Recipe`` from a recipe, a list of steps or the path of a recipe file."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe)
    return Recipe.from_list(recipe)
