"""Sweeps: every point of a parameter grid trained as an ordinary run directory, on a local
process pool or a Ray cluster; re-running skips finished runs, resumes killed ones and retries
failed ones.

Library API (the ``induct sweep`` command is a thin layer over it)::

    from induction_toolkit.sweep import run_sweep, sweep_status
    from induction_toolkit.training import TrainConfig

    result = run_sweep(TrainConfig(preset="attn-only-2l", steps=300),
                       {"seed": [0, 1, 2], "dropout": [0.0, 0.1]}, "sweeps/dropout",
                       backend="local", workers=None, address=None, progress=True)
    for run in result.runs:           # grid order; run.state: done | failed | skipped
        print(run.params, run.state, run.final_loss, run.max_prefix_matching,
              run.induction_layer, run.onset_step, run.run_dir, run.error)
    result.to_dict()                  # the ``induct sweep --json`` document
    sweep_status("sweeps/dropout")    # done / running / failed / pending / interrupted per run

- ``base``: a ``TrainConfig`` or a dict of its fields; ``grid``: ``{name: [values]}`` with names
  ``TrainConfig`` fields, ``model.KEY`` (model override) or ``task.KEY`` (task option)
  (:mod:`.grid`). Run directories are named ``key-value_key-value`` in grid order.
- ``backend="local"``: ``workers`` processes (default: one per CPU, at most one per run), each
  with ``threads`` torch threads (default: CPUs ÷ workers) (:mod:`.local`).
- ``backend="ray"``: one Ray task per run declaring ``threads`` CPUs (and a GPU on clusters
  that have them); ``address`` joins a running cluster, otherwise ``ray.init()`` starts a local
  one. Run directories are written to shared storage (:mod:`.ray_backend` says why not
  copy-back).
- Summary numbers per run (:mod:`.summary`): ``final_loss``, ``max_prefix_matching``,
  ``induction_layer``, ``onset_step``, computed with ``induct dynamics``' own analysis.
- ``OUT/sweep.json`` is the manifest (:mod:`.state`); ``OUT/figures/<param>.png`` the summary
  figures (:mod:`.figures`). See ``docs/howto/sweeps.md``.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    "run_sweep": ".runner", "RunView": ".runner", "BACKENDS": ".runner",
    "SweepResult": ".result", "SweepRun": ".result",
    "sweep_status": ".state", "SweepStatus": ".state", "RunStatus": ".state",
    "SweepPoint": ".grid", "expand_grid": ".grid", "parse_grid_options": ".grid",
    "summarize_run": ".summary",
}

__all__ = ["BACKENDS", "RunStatus", "RunView", "SweepPoint", "SweepResult", "SweepRun",
           "SweepStatus", "expand_grid", "parse_grid_options", "run_sweep", "summarize_run",
           "sweep_status"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)


if TYPE_CHECKING:
    from .grid import SweepPoint, expand_grid, parse_grid_options
    from .result import SweepResult, SweepRun
    from .runner import BACKENDS, RunView, run_sweep
    from .state import RunStatus, SweepStatus, sweep_status
    from .summary import summarize_run
