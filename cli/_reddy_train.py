"""``induct train --task reddy``: the data options and the run (called from ``cli/train.py``)."""

from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Optional

import typer

from ._common import stderr, stdout

_H = "Reddy data (--task reddy): "
# The data options, added to ``induct train``'s signature; None: the task's default.
OPTIONS = {
    "K": (int, typer.Option("--K", help=_H + "classes (default 512).", rich_help_panel="Reddy task")),
    "N": (int, typer.Option("--N", help=_H + "item–label pairs before the target (default 8).", rich_help_panel="Reddy task")),
    "L": (int, typer.Option("--L", help=_H + "labels (default 32).", rich_help_panel="Reddy task")),
    "B": (int, typer.Option("--B", help=_H + "burstiness, copies of each class in a bursty sequence (default 2; 0: i.i.d.).", rich_help_panel="Reddy task")),
    "p_bursty": (float, typer.Option("--p-bursty", help=_H + "fraction of bursty sequences p_B (default 1).", rich_help_panel="Reddy task")),
    "p_novel": (float, typer.Option("--p-novel", help=_H + "fraction of novel-class sequences p_C (default 0).", rich_help_panel="Reddy task")),
    "eps": (float, typer.Option("--eps", help=_H + "within-class variability ε (default 0.1).", rich_help_panel="Reddy task")),
    "alpha": (float, typer.Option("--alpha", help=_H + "Zipf exponent of the class frequencies (default 0).", rich_help_panel="Reddy task")),
    "D": (int, typer.Option("--D", help=_H + "content dimensions (default 63).", rich_help_panel="Reddy task")),
    "P": (int, typer.Option("--P", help=_H + "one-hot position dimensions (default 65).", rich_help_panel="Reddy task")),
}


def annotations() -> SimpleNamespace:
    """``name → Annotated[Optional[type], Option]`` for the data options, as attributes."""
    return SimpleNamespace(**{k: Annotated[Optional[t], opt] for k, (t, opt) in OPTIONS.items()})


def check_not_given(task: str, values: dict[str, Any]) -> None:
    """Refuse the reddy data options for another task."""
    from induction_toolkit.errors import ConfigError

    given = [f"--{k.replace('_', '-')}" for k, v in values.items() if v is not None]
    if given and task != "reddy":
        raise ConfigError(f"{', '.join(given)} only apply to --task reddy")


def train_reddy_cli(*, preset: str, steps: int, out: Optional[Path], resume: Optional[Path],
                    lr: Optional[float], weight_decay: Optional[float], batch_size: Optional[int],
                    seed: int, eval_every: int, eval_every_given: bool, device: str, quiet: bool,
                    values: dict[str, Any]) -> None:
    """Validate everything (before anything is written), train one run, print its summary."""
    from induction_toolkit.errors import ConfigError
    from induction_toolkit.reddy.train import reddy_train_config, train_reddy
    from induction_toolkit.tasks.reddy import ReddyConfig

    if preset not in ("reddy", "attn-only-2l"):
        raise ConfigError(f"--task reddy trains the reddy network; pass --preset reddy, not '{preset}'")
    if resume is not None:
        raise ConfigError("a reddy run cannot be resumed; train it again with --out")
    if out is None:
        raise ConfigError("pass --out RUN_DIR")
    data = ReddyConfig(**{k: v for k, v in values.items() if v is not None})
    config = reddy_train_config(data, steps=steps, seed=seed, lr=lr, weight_decay=weight_decay,
                                batch_size=batch_size, device=device,
                                eval_every=eval_every if eval_every_given else min(500, steps))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty directory")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]train reddy"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TextColumn("IC acc {task.fields[ic]}"),
                  TimeRemainingColumn(), console=stderr, disable=quiet) as bar:
        t = bar.add_task("train", total=steps, loss="-", ic="-")
        run = train_reddy(
            config, out, progress=lambda s, n, loss: bar.update(t, completed=s, loss=f"{loss:.3f}"),
            on_eval=lambda row, _model: bar.update(t, ic=f"{row['ic_accuracy']:.2f}"))
    last = run.final()
    stdout.print(f"run {out}: {steps} steps; IC accuracy {last['ic_accuracy']:.3f}, IW "
                 f"{last['iw_accuracy']:.3f}, swapped {last['swapped_accuracy']:.3f} (chance "
                 f"{1 / data.L:.3f}); IC ≥ 0.5 at step {run.transition_step()}; "
                 f"{run.seconds_per_step * 1e3:.1f} ms/step ({run.cpu_seconds_per_step * 1e3:.1f} ms CPU)",
                 markup=False)
    stdout.print(f"next: induct score {out}", style="dim")

