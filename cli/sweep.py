"""``induct sweep``: train every point of a parameter grid (local process pool or Ray), resumably."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import JsonFlag, print_json, stderr, stdout
from ._wandb import WandbOpt


def sweep(
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="Grid parameter name=v1,v2,… (repeatable): a training option (seed, lr, weight_decay, dropout, steps, …), model.KEY or task.KEY.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Sweep directory: one run directory per grid point, sweep.json, figures/.")] = None,
    status: Annotated[Optional[Path], typer.Option("--status", help="Show what is done, running and failed in this sweep directory, and exit.")] = None,
    backend: Annotated[str, typer.Option(help="local (process pool on this machine) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (HOST:PORT of a head started with `ray start --head`, or ray://HOST:PORT); default: a local Ray.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Runs at once (default: one per CPU, at most one per run).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Torch threads (and Ray CPUs) per run (default: CPUs ÷ workers).")] = None,
    preset: Annotated[str, typer.Option(help="Model preset (attn-only-1l/2l/4l, blog-4l).")] = "attn-only-2l",
    task: Annotated[str, typer.Option(help="Training task: repeated, copying or text.")] = "repeated",
    steps: Annotated[int, typer.Option(help="Optimizer steps per run.")] = 1500,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 3e-3,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 0,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 32,
    dropout: Annotated[float, typer.Option(help="Attention and residual dropout.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed (when not in the grid).")] = 0,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N steps.")] = 10,
    log_checkpoints: Annotated[int, typer.Option(help="Extra log-spaced checkpoints (dense early).")] = 20,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    model_opt: Annotated[Optional[list[str]], typer.Option("--model-opt", help="Model config override key=value (repeatable).")] = None,
    task_opt: Annotated[Optional[list[str]], typer.Option("--task-opt", help="Task option key=value (repeatable).")] = None,
    group: Annotated[bool, typer.Option("--group", help="Grid points differing only in seed, lr, weight decay, dropout, warm-up or steps train as one grouped model: faster, equal to single runs within the grouped forward's tolerance (not bit for bit).")] = False,
    wandb: WandbOpt = None,
    figures: Annotated[bool, typer.Option(help="Write the summary figures to OUT/figures.")] = True,
    quiet: Annotated[bool, typer.Option(help="No live table.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Train every point of a grid as its own run directory; re-running skips finished runs,
    resumes killed ones and retries failed ones."""
    from induction_toolkit.errors import ConfigError

    if status is not None:
        return _show_status(status, json_out)
    if out is None:
        raise ConfigError("pass --out SWEEP_DIR (or --status SWEEP_DIR)")
    from induction_toolkit.sweep.grid import parse_grid_options
    from induction_toolkit.training import TrainConfig

    from .train import _parse_options

    params = parse_grid_options(grid or [])
    base = TrainConfig(preset=preset, task=task, steps=steps, lr=lr, warmup=warmup,
                       weight_decay=weight_decay, batch_size=batch_size, dropout=dropout,
                       seed=seed, eval_every=eval_every, log_checkpoints=log_checkpoints,
                       device=device, model_overrides=_parse_options(model_opt or [], "--model-opt"),
                       task_options=_parse_options(task_opt or [], "--task-opt"))
    from induction_toolkit.sweep import run_sweep

    result = run_sweep(base, params, out, backend=backend, workers=workers, threads=threads,
                       address=address, progress=not quiet, wandb=wandb, figures=figures,
                       group=group)
    if json_out:
        print_json(result.to_dict())
    else:
        from induction_toolkit.sweep.live import summary_table

        stdout.print(summary_table(result))
        for path in result.figures:
            stdout.print(f"figure: {path}", style="dim")
        for note in result.notes:
            stdout.print(f"note: {note}", style="yellow")
        stdout.print(f"next: induct sweep --status {out} · induct dynamics {out}/<run>", style="dim")
    failed = [r for r in result.runs if r.state == "failed"]
    if failed:
        stderr.print(f"{len(failed)} of {len(result.runs)} runs failed; run the same command "
                     "again to retry them", style="yellow")
        raise typer.Exit(1)


def _show_status(directory: Path, json_out: bool) -> None:
    from rich.table import Table

    from induction_toolkit.sweep import sweep_status

    st = sweep_status(directory)
    if json_out:
        print_json(st.to_dict())
        return
    counts = ", ".join(f"{n} {s}" for s, n in st.counts().items())
    table = Table(title=f"sweep {directory}: {counts}"
                  + (" (coordinator running)" if st.running else ""), title_justify="left")
    for name in ("run", "state", "step", "final loss", "max PM", "onset", "error"):
        table.add_column(name, justify="left" if name in ("run", "state", "error") else "right")
    for r in st.runs:
        s = r.summary
        table.add_row(r.name, r.state, f"{r.step if r.step is not None else '-'}/{r.steps or '-'}",
                      "-" if s.get("final_loss") is None else f"{s['final_loss']:.3f}",
                      "-" if s.get("max_prefix_matching") is None
                      else f"{s['max_prefix_matching']:.2f}",
                      "-" if s.get("onset_step") is None else str(s["onset_step"]),
                      r.error or "")
    stdout.print(table)
