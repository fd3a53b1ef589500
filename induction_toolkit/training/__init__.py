"""Training runs: config, loop, checkpoint schedule, evaluation, resume."""

from .config import TrainConfig
from .loop import (METRICS_FILENAME, NonFiniteLossError, Progress, TrainResult, read_metrics,
                   read_run_config, train)
from .schedule import checkpoint_steps, eval_steps
from .step import LOSS_FNS, get_loss_fn, hooked_loss

__all__ = ["LOSS_FNS", "METRICS_FILENAME", "NonFiniteLossError", "Progress", "TrainConfig",
           "TrainResult", "checkpoint_steps", "eval_steps", "get_loss_fn", "hooked_loss",
           "read_metrics", "read_run_config", "train"]
