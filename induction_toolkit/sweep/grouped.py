"""``--group``: grid points that differ only in values that keep every tensor's shape (seed, learning
rate, weight decay, dropout, warm-up, betas, steps: ``training.grouped.GROUPABLE_FIELDS``) train
as one grouped model (issue 17's ``train_grouped``), one forward and backward for all of them.

Each member still gets an ordinary run directory. Grouped runs equal single runs within the
grouped forward's tolerance (docs/performance.md), not bit for bit: a batched matmul sums in
another order. A member that diverges fails alone; the others finish.
"""

import json
import time
from pathlib import Path
from typing import Any

from ..run_dir import config_path
from .grid import SweepPoint

GROUPED_NOTE = ("grouped runs (--group) equal single runs within the grouped forward's tolerance "
                "(issue 17), not bit for bit")


def partition(points: list[SweepPoint], out: Path) -> list[list[SweepPoint]]:
    """``points`` split into groups that can train together: same config outside
    ``GROUPABLE_FIELDS`` and all new or all resumable (grid order kept within a group)."""
    from ..training.grouped import GROUPABLE_FIELDS

    groups: dict[str, list[SweepPoint]] = {}
    for p in points:
        fixed = {k: v for k, v in p.config.to_dict().items() if k not in GROUPABLE_FIELDS}
        key = json.dumps([fixed, config_path(out / p.name).is_file()], sort_keys=True, default=str)
        groups.setdefault(key, []).append(p)
    return list(groups.values())


def execute_group(job: dict[str, Any]) -> dict[str, Any]:
    """Train the members of a group job together; ``{"members": {name: outcome}}``."""
    import torch

    from ..training import TrainConfig
    from ..training.grouped import train_grouped
    from .summary import summarize_run
    from .worker import one_line_error

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, int(job.get("threads") or 1)))
    members = job["members"]
    configs = [TrainConfig.from_dict(m["config"]) for m in members]
    dirs = [Path(m["run_dir"]) for m in members]
    base = {"state": "failed", "error": None, "summary": None, "resumed_from": None,
            "wall_s": None, "grouped": len(members)}
    outcomes = {m["name"]: dict(base) for m in members}
    try:
        results = train_grouped(configs, dirs, resume=config_path(dirs[0]).is_file(),
                                progress=False, handle_signals=bool(job.get("handle_signals")))
        for m, r in zip(members, results):
            outcomes[m["name"]].update(state="failed" if r.diverged else "done",
                                       error=r.diverged, resumed_from=r.resumed_from)
    except KeyboardInterrupt:
        for o in outcomes.values():
            o.update(state="interrupted", error="interrupted (resumes on the next invocation)")
    except Exception as exc:  # the whole group failed: every member reports it
        for o in outcomes.values():
            o["error"] = one_line_error(exc)
    for m, d in zip(members, dirs):
        o = outcomes[m["name"]]
        try:
            summary = summarize_run(d)
            o["summary"] = summary if o["state"] == "done" else {"steps_done": summary["steps_done"]}
        except Exception as exc:  # no config or metrics yet
            o["summary_error"] = one_line_error(exc)
        if job.get("wandb") and o["state"] == "done":
            _log_afterwards(d, {**job["wandb"], "name": m["name"]})
        o["wall_s"] = round(time.perf_counter() - t0, 3)
    return {"members": outcomes}


def _log_afterwards(run_dir: Path, wandb: dict[str, Any]) -> None:
    # a group has no per-member progress callback: its rows are logged once it has finished
    from ..run_dir import read_metrics
    from ..wandb_log import WandbLogger

    logger = WandbLogger(run_dir, resume=False, **wandb)
    for row in read_metrics(run_dir):
        logger.log_row(row)
    logger.finish(ok=True)
