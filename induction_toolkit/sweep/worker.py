"""One sweep run, executed where a backend places it (a pool process, a Ray task).

``execute_run(job)`` trains (or resumes) the run, then summarises it, and always returns a plain
dict: ``state`` (``done``, ``failed`` or ``interrupted``), ``error`` (one line), ``summary``,
``resumed_from``, ``wall_s``. A diverged or crashing run is ``failed`` with its error, never an
exception that would stop the sweep.
"""

import time
import traceback
from pathlib import Path
from typing import Any


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line (a toolkit error keeps its message only)."""
    from ..errors import InductionToolkitError

    text = " ".join(str(exc).split())
    if isinstance(exc, InductionToolkitError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def execute_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train the run described by ``job`` (``config``, ``run_dir``, ``threads``, ``wandb``,
    ``handle_signals``) into its directory, resuming what is there; returns its outcome."""
    import torch

    from ..run_dir import config_path
    from ..training import TrainConfig, train
    from .summary import summarize_run

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, int(job.get("threads") or 1)))
    config = TrainConfig.from_dict(job["config"])
    run_dir = Path(job["run_dir"])
    outcome: dict[str, Any] = {"state": "failed", "error": None, "summary": None,
                               "resumed_from": None, "wall_s": None}
    logger = None
    try:
        resume = config_path(run_dir).is_file()
        if job.get("wandb"):
            from ..wandb_log import WandbLogger

            logger = WandbLogger(run_dir=run_dir, config=config, resume=resume, **job["wandb"])
        result = train(config, run_dir, resume=resume,
                       progress=logger.on_progress if logger is not None else None,
                       handle_signals=bool(job.get("handle_signals", False)))
        outcome.update(state="done", resumed_from=result.resumed_from)
    except KeyboardInterrupt:
        outcome.update(state="interrupted", error="interrupted (resumes on the next invocation)")
    except Exception as exc:  # a failed run is reported, and the sweep goes on
        outcome["error"] = one_line_error(exc)
        if not _is_user_error(exc):
            outcome["traceback"] = traceback.format_exc(limit=8)
    try:
        outcome["summary"] = summarize_run(run_dir)
    except Exception as exc:  # no config yet, damaged metrics: the run's state says enough
        outcome["summary_error"] = one_line_error(exc)
    if logger is not None:
        logger.finish(ok=outcome["state"] == "done")
    outcome["wall_s"] = round(time.perf_counter() - t0, 3)
    return outcome


def _is_user_error(exc: BaseException) -> bool:
    from ..errors import InductionToolkitError

    return isinstance(exc, InductionToolkitError)
