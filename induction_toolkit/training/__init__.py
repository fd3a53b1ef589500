"""Training runs: config, loop, checkpoint schedule, evaluation, resume.

Names load on first use, so ``training.config`` (plain dataclasses) can be imported by the
run-directory reader without pulling in torch and TransformerLens with the loop.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": ".config",
    "Progress": ".loop", "TrainResult": ".loop", "train": ".loop",
    "TrainState": ".state",
    "checkpoint_steps": ".schedule", "eval_steps": ".schedule",
    "LOSS_FNS": ".step", "get_loss_fn": ".step", "hooked_loss": ".step",
    "NonFiniteLossError": "..errors",
    # the run-directory format lives in induction_toolkit.run_dir; kept here for old imports
    "METRICS_FILENAME": "..run_dir", "read_metrics": "..run_dir", "read_run_config": "..run_dir",
}

__all__ = ["LOSS_FNS", "METRICS_FILENAME", "NonFiniteLossError", "Progress", "TrainConfig",
           "TrainResult", "TrainState", "checkpoint_steps", "eval_steps", "get_loss_fn",
           "hooked_loss", "read_metrics", "read_run_config", "train"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)


if TYPE_CHECKING:
    from ..errors import NonFiniteLossError
    from ..run_dir import METRICS_FILENAME, read_metrics, read_run_config
    from .config import TrainConfig
    from .loop import Progress, TrainResult, train
    from .schedule import checkpoint_steps, eval_steps
    from .state import TrainState
    from .step import LOSS_FNS, get_loss_fn, hooked_loss
