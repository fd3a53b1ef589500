"""Data distributions: one module per task, each a small config dataclass plus a seeded generator."""

from .copying import CopyingConfig
from .registry import TASKS, make_task, task_from_dict
from .repeated import RepeatedTaskConfig, RepeatedTokensConfig, repeated_tokens
from .text import TextConfig

__all__ = ["CopyingConfig", "RepeatedTaskConfig", "RepeatedTokensConfig", "TASKS", "TextConfig",
           "make_task", "repeated_tokens", "task_from_dict"]
