"""Checkpoint schedule: dense early (log-spaced) plus linear, so the transition is well sampled."""

import numpy as np


def checkpoint_steps(total: int, *, every: int | None = None, n_log: int = 20) -> list[int]:
    """Sorted steps at which to checkpoint: 0, ``n_log`` log-spaced steps in ``[1, total]``,
    every multiple of ``every`` (default ``total // 10``), and ``total``."""
    every = every or max(1, total // 10)
    steps = {0, total, *range(every, total + 1, every)}
    if n_log > 0:
        steps.update(int(s) for s in np.unique(np.round(np.geomspace(1, total, n_log))))
    return sorted(s for s in steps if 0 <= s <= total)


def eval_steps(total: int, every: int) -> list[int]:
    """Evaluation steps: 0, every multiple of ``every``, and the last step."""
    return sorted({0, total, *range(every, total + 1, every)})
