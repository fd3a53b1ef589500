"""One number per run for a sweep's table: final loss, peak prefix-matching, layer and onset.

- ``final_loss``: held-out loss (nats) of the last evaluation (``eval_loss``, the task's fixed eval
  batch); ``final_in_context_loss``: its repeated-half loss (``loss_repeated_half``);
- ``max_prefix_matching``: the highest prefix-matching score of any head at any evaluation, in
  [0, 1] (chance on the scoring sequences ≈ 1/position; an induction head scores near 1);
- ``induction_layer``: the layer of the run's strongest induction head as ``induct dynamics``
  picks it (a head with a logistic onset, else the highest final score), when that head's peak
  prefix-matching reaches ``scores.INDUCTION_THRESHOLD``; ``None`` when no head does;
- ``onset_step``: ``induct dynamics``' ``induction_onset_step`` (centre of the logistic fitted to
  that head's prefix-matching), ``None`` without a transition.

These come from :func:`induction_toolkit.dynamics.analyse` on the run's metrics, so a sweep and
``induct dynamics RUN`` never disagree. A value that cannot be computed is ``None``.
"""

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..run_dir import read_metrics, read_run_config
from ..scores import INDUCTION_THRESHOLD, head_label

SUMMARY_KEYS = ("final_loss", "final_in_context_loss", "max_prefix_matching", "induction_layer",
                "induction_head", "onset_step", "steps_done")
# The onset does not depend on the lag's bootstrap interval; a few resamples keep a sweep's
# summaries cheap (the interval itself is ``induct dynamics``' job).
_BOOTSTRAP = 20


def summarize_rows(rows: list[dict[str, Any]], task: str | None = None) -> dict[str, Any]:
    """The sweep summary of a run from its metrics rows (see the module docstring)."""
    from ..dynamics import analyse

    summary: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    if not rows:
        return summary
    last = rows[-1]
    summary["steps_done"] = last["step"]
    summary["final_loss"] = last.get("eval_loss")
    summary["final_in_context_loss"] = last.get("loss_repeated_half")
    pms = [max(max(r) for r in row["prefix_matching"]) for row in rows if row.get("prefix_matching")]
    summary["max_prefix_matching"] = max(pms) if pms else None
    try:
        dyn = analyse(rows, task=task, bootstrap=_BOOTSTRAP)
    except ConfigError:  # fewer than three evaluations: no dynamics
        return summary
    layer, head = dyn.strongest_head
    strongest = next(h for h in dyn.heads if (h.layer, h.head) == (layer, head))
    if strongest.max_prefix_matching >= INDUCTION_THRESHOLD:
        summary["induction_layer"] = int(layer)
        summary["induction_head"] = head_label(layer, head)
    summary["onset_step"] = dyn.induction_onset_step
    return summary


def summarize_run(run_dir: str | Path) -> dict[str, Any]:
    """The sweep summary of the training run in ``run_dir``."""
    config = read_run_config(run_dir)
    return summarize_rows(read_metrics(run_dir), task=(config.get("task") or {}).get("name"))
