"""Sweep grids: parse ``--grid key=v1,v2`` options, check them, and expand them into runs.

A grid maps parameter names to lists of values. Names are ``TrainConfig`` fields (``seed``,
``lr``, ``dropout``, ``weight_decay``, ``steps``, …), ``model.KEY`` (a model config override,
e.g. ``model.n_layers``) or ``task.KEY`` (a task option, e.g. ``task.max_segment``). Every point of
the Cartesian product is one training run, in a directory named after its parameters in grid
order (``seed-0_dropout-0.1``). Nothing here imports torch.
"""

import dataclasses
import itertools
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..training.config import TrainConfig

MODEL_PREFIX, TASK_PREFIX = "model.", "task."
# Fields a grid cannot vary: containers (use model./task. keys), and where a run trains, which
# does not make it another run.
_NOT_GRIDDABLE = frozenset({"model_overrides", "task_options", "betas", "device"})


@dataclass(frozen=True)
class SweepPoint:
    """One point of a grid: its run-directory name, its parameters and its full config."""

    name: str
    params: dict[str, Any]
    config: TrainConfig


def griddable_fields() -> dict[str, Any]:
    """``{name: annotated type}`` of the ``TrainConfig`` fields a grid may vary."""
    return {f.name: f.type for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_GRIDDABLE}


def parse_value(raw: str) -> Any:
    """One grid value from the command line: JSON when it parses (``0.1``, ``true``, ``null``),
    else the string itself (``attn-only-2l``)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_grid_options(items: list[str]) -> dict[str, list[Any]]:
    """``["seed=0,1", "dropout=0,0.1"]`` → ``{"seed": [0, 1], "dropout": [0, 0.1]}`` (checked)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_") if not key.startswith((MODEL_PREFIX, TASK_PREFIX)) \
            else key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid must look like name=v1,v2,…, got '{item}'")
        if key in grid:
            raise ConfigError(f"--grid {key} given twice; put all its values in one list")
        values = [v.strip() for v in raw.split(",")] if raw.strip() else []
        if any(v == "" for v in values):
            raise ConfigError(f"--grid {key}: empty value in '{raw}'")
        grid[key] = [parse_value(v) for v in values]
    check_grid(grid)
    return grid


def _type_ok(value: Any, annotation: Any) -> bool:
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for t in options:
        if t is type(None) and value is None:
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t is str and isinstance(value, str):
            return True
    return False


def _type_name(annotation: Any) -> str:
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in options)


def check_grid(grid: dict[str, list[Any]]) -> None:
    """Raise ``ConfigError`` for an unknown parameter, an empty or repeated list, a bad value type."""
    if not isinstance(grid, dict):
        raise ConfigError(f"a grid is a dict of parameter → list of values, got {type(grid).__name__}")
    fields = griddable_fields()
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"grid {key}: values must be a list, got {values!r}")
        if not values:
            raise ConfigError(f"grid {key}: empty list of values")
        if key.startswith((MODEL_PREFIX, TASK_PREFIX)):
            if not key.split(".", 1)[1]:
                raise ConfigError(f"grid {key}: name the option after the dot")
        elif key not in fields:
            raise ConfigError(f"grid: unknown parameter '{key}'; choose from "
                              f"{', '.join(sorted(fields))}, model.KEY or task.KEY")
        else:
            for v in values:
                if not _type_ok(v, fields[key]):
                    raise ConfigError(f"grid {key}: value {v!r} is not {_type_name(fields[key])}")
        names = [_fmt(v) for v in values]
        if len(set(names)) != len(names):
            raise ConfigError(f"grid {key}: repeated value in {list(values)}")


def _fmt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


def run_name(params: dict[str, Any]) -> str:
    """Directory name of a grid point: ``key-value`` pairs in grid order, joined by ``_``."""
    if not params:
        return "base"
    return "_".join(f"{_fmt(k)}-{_fmt(v)}" for k, v in params.items())


def point_config(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """``base`` with a grid point's parameters applied (``model.``/``task.`` keys into their dicts)."""
    plain = {k: v for k, v in params.items() if not k.startswith((MODEL_PREFIX, TASK_PREFIX))}
    model = {**base.model_overrides, **{k[len(MODEL_PREFIX):]: v for k, v in params.items()
                                        if k.startswith(MODEL_PREFIX)}}
    task = {**base.task_options, **{k[len(TASK_PREFIX):]: v for k, v in params.items()
                                    if k.startswith(TASK_PREFIX)}}
    data = {**base.to_dict(), **plain, "model_overrides": model, "task_options": task}
    return TrainConfig.from_dict(data)


def as_config(base: TrainConfig | dict[str, Any]) -> TrainConfig:
    """A sweep's base config from a ``TrainConfig`` or a dict of its fields (unknown keys refused)."""
    if isinstance(base, TrainConfig):
        return base
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(base) - known)
    if unknown:
        raise ConfigError(f"unknown training config field(s): {', '.join(unknown)}")
    return TrainConfig(**base)


def expand_grid(base: TrainConfig | dict[str, Any], grid: dict[str, list[Any]]) -> list[SweepPoint]:
    """Every point of ``grid`` (Cartesian product, first key slowest) applied to ``base``."""
    base = as_config(base)
    check_grid(grid)
    keys = list(grid)
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, combo))
        points.append(SweepPoint(run_name(params), params, point_config(base, params)))
    return points
