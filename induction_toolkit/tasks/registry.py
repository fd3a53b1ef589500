"""Training tasks by name: build one from CLI-style options, or rebuild one from a run's config."""

import dataclasses
from typing import Any

from ..errors import ConfigError
from .base import TrainingTask
from .copying import CopyingConfig
from .repeated import RepeatedTaskConfig
from .text import TextConfig

TASKS: dict[str, type] = {"repeated": RepeatedTaskConfig, "copying": CopyingConfig,
                          "text": TextConfig}


def make_task(name: str, **options: Any) -> TrainingTask:
    """The task called ``name`` with config fields ``options`` (unknown fields are an error)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    cls = TASKS[name]
    known = {f.name for f in dataclasses.fields(cls)} - {"name"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"task '{name}' has no option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"invalid options for task '{name}': {exc}") from None


def task_from_dict(data: dict[str, Any]) -> TrainingTask:
    """Inverse of ``task.to_dict()``."""
    data = dict(data)
    name = data.pop("name", None)
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}' in run config")
    known = {f.name for f in dataclasses.fields(TASKS[name])}
    return make_task(name, **{k: v for k, v in data.items() if k in known})
