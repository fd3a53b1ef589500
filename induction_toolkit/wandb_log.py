"""Weights & Biases logging for ``induct train --wandb`` and ``induct sweep --wandb``.

``wandb`` is imported here only, and only when logging is asked for. Each evaluation's metrics
row is logged at its step (scalars as they are; the per-head score matrices as one value per head,
``prefix_matching/L1H0``, plus their maximum); at the end the run's dynamics figures (those of
``induct dynamics``) are logged as images. A run that resumes logs to the same W&B run (its id is
kept in the run directory's ``wandb-run-id``). Offline use: ``WANDB_MODE=offline`` writes
everything under the run directory's ``wandb/`` and needs no network (``wandb sync`` uploads it
later). A sweep's runs share a W&B group: the sweep directory's name.
"""

from pathlib import Path
from typing import Any

from .errors import ConfigError

RUN_ID_FILENAME = "wandb-run-id"
DEFAULT_PROJECT = "induction-toolkit"


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise ConfigError("--wandb needs Weights & Biases: pip install wandb") from None
    return wandb


def flatten_row(row: dict[str, Any]) -> dict[str, float]:
    """A metrics row as W&B scalars: numbers as they are, per-head matrices one key per head
    (``prefix_matching/L1H0``) plus ``…/max``; lists of other shapes are left out."""
    from .scores import head_label

    flat: dict[str, float] = {}
    for key, value in row.items():
        if key == "step":
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = value
        elif isinstance(value, list) and value and all(isinstance(r, list) for r in value):
            cells = [(l, h, x) for l, r in enumerate(value) for h, x in enumerate(r)
                     if isinstance(x, (int, float))]
            for l, h, x in cells:
                flat[f"{key}/{head_label(l, h)}"] = x
            if cells:
                flat[f"{key}/max"] = max(x for _, _, x in cells)
    return flat


class WandbLogger:
    """One training run's W&B run: ``on_progress`` (the training loop's progress callback) logs
    each new metrics row; ``finish`` logs the dynamics figures and closes the run."""

    def __init__(self, run_dir: str | Path, config: Any, *, project: str | None = None,
                 group: str | None = None, name: str | None = None, resume: bool = False):
        from .atomic import atomic_write_text
        from .run_dir import read_metrics

        self.wandb = _import_wandb()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.run_dir / RUN_ID_FILENAME
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        if run_id is None:
            run_id = self.wandb.util.generate_id()
            atomic_write_text(id_file, run_id + "\n")
        # rows already on disk were logged by the attempt that wrote them
        rows = read_metrics(self.run_dir) if resume else []
        self.last_step = rows[-1]["step"] if rows else -1
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        self.run = self.wandb.init(project=project or DEFAULT_PROJECT, group=group,
                                   name=name or self.run_dir.name, id=run_id, resume="allow",
                                   config=cfg, dir=str(self.run_dir), reinit="finish_previous")

    def log_row(self, row: dict[str, Any]) -> None:
        """Log one metrics row at its step (rows at or before the last logged step are skipped)."""
        if row["step"] <= self.last_step:
            return
        self.run.log(flatten_row(row), step=int(row["step"]))
        self.last_step = row["step"]

    def on_progress(self, progress: Any) -> None:
        """The training loop's ``progress`` callback: logs the latest row when it is new."""
        if progress.last_eval is not None:
            self.log_row(progress.last_eval)

    def finish(self, ok: bool = True) -> None:
        """Log the run's dynamics figures (when it has enough evaluations) and close the run."""
        try:
            if ok:
                self.run.log({f"figures/{p.stem}": self.wandb.Image(str(p))
                              for p in _dynamics_figures(self.run_dir)}, step=max(self.last_step, 0))
        finally:
            self.run.finish(exit_code=0 if ok else 1)


def _dynamics_figures(run_dir: Path) -> list[Path]:
    from .dynamics import run_dynamics
    from .run_dir import figures_dir, read_metrics
    from .viz.dynamics_figures import write_dynamics_figures

    try:
        dyn = run_dynamics(run_dir)
    except ConfigError:  # too few evaluations for dynamics: no figures
        return []
    return write_dynamics_figures(read_metrics(run_dir), dyn, figures_dir(run_dir))


def log_sweep_summary(result: Any, *, project: str | None, group: str) -> None:
    """One W&B run ``<group>-summary`` in the sweep's group: the summary table and figures."""
    wandb = _import_wandb()
    run = wandb.init(project=project or DEFAULT_PROJECT, group=group, name=f"{group}-summary",
                     job_type="sweep-summary", dir=str(result.out), reinit="finish_previous")
    try:
        rows = [r.to_dict() for r in result.runs]
        columns = ["name", "state", "final_loss", "max_prefix_matching", "induction_layer",
                   "onset_step", *result.grid]
        table = wandb.Table(columns=columns,
                            data=[[r.get(c) if c in r else r["params"].get(c) for c in columns]
                                  for r in rows])
        run.log({"sweep": table, **{f"figures/{p.stem}": wandb.Image(str(p))
                                    for p in result.figures}})
    finally:
        run.finish()
