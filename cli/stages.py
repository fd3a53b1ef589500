"""``induct stages``: developmental stages of a run from the local learning coefficient (LLC)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import JsonFlag, print_json, stderr, stdout


def stages(
    run_dir: Annotated[Path, typer.Argument(help="A training run directory (induct train --out).")],
    json_out: JsonFlag = False,
    lr: Annotated[float, typer.Option(help="SGLD step size ε.")] = 3e-5,
    n_beta: Annotated[float, typer.Option(help="SGLD inverse temperature nβ.")] = 300.0,
    localization: Annotated[float, typer.Option(help="SGLD localization γ (pull towards the checkpoint).")] = 3000.0,
    chains: Annotated[int, typer.Option(help="SGLD chains per checkpoint (the spread is over chains).")] = 2,
    draws: Annotated[int, typer.Option(help="SGLD steps per chain.")] = 60,
    batch_size: Annotated[int, typer.Option(help="Sequences per SGLD step.")] = 16,
    sequences: Annotated[int, typer.Option(help="Held-out sequences of the run's task to sample on.")] = 256,
    sigma: Annotated[float, typer.Option(help="Gaussian smoothing of the LLC curve, in checkpoints.")] = 1.0,
    steps: Annotated[Optional[str], typer.Option(help="Only these checkpoints: comma-separated steps.")] = None,
    max_checkpoints: Annotated[Optional[int], typer.Option(help="At most this many checkpoints, log-spaced.")] = None,
    save: Annotated[bool, typer.Option(help="Save the result in the run directory, for induct dynamics and induct report.")] = True,
) -> None:
    """LLC at every checkpoint (devinterp's SGLD), smoothed; stage boundaries at its critical points."""
    from induction_toolkit.errors import ConfigError
    from induction_toolkit.run_dir import list_checkpoints, read_run_config

    read_run_config(run_dir)
    chosen = None
    if steps is not None:
        try:
            chosen = [int(s) for s in steps.split(",")]
        except ValueError:
            raise ConfigError(f"--steps must be comma-separated integers, got '{steps}'") from None
    if max_checkpoints is not None:
        if max_checkpoints < 3:
            raise ConfigError(f"--max-checkpoints must be ≥ 3, got {max_checkpoints}")
        from induction_toolkit.stages import log_spaced

        chosen = log_spaced(chosen or list(list_checkpoints(run_dir)), max_checkpoints)
    from induction_toolkit.stages import SamplerSettings, run_stages

    settings = SamplerSettings(lr=lr, n_beta=n_beta, localization=localization, num_chains=chains,
                               num_draws=draws, batch_size=batch_size, n_sequences=sequences)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]LLC"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("step {task.fields[step]}"), TimeElapsedColumn(), console=stderr,
                  transient=True) as bar:
        task = bar.add_task("llc", total=None, step="-")

        def on_checkpoint(done, total, step):
            bar.update(task, completed=done, total=total, step=step)

        result = run_stages(run_dir, settings, sigma=sigma, steps=chosen, progress=on_checkpoint)
    data = result.to_dict()
    if save:
        from induction_toolkit.run_dir import write_stages

        write_stages(run_dir, data)
    if json_out:
        print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"LLC · {run_dir}", header_style="bold")
    for col in ("step", "λ̂ mean", "std (chains)", "smoothed", "loss at w*", "calibration"):
        table.add_column(col, justify="right")
    for row, sm in zip(data["llc"], data["smoothed"]):
        table.add_row(str(row["step"]), f"{row['mean']:.2f}", f"{row['std']:.2f}", f"{sm:.2f}",
                      f"{row['init_loss']:.3f}", "ok" if not row["problems"] else "⚠")
    stdout.print(table)
    pc = data["phase_change"] or {}
    inside = data["boundaries_in_phase_change"]
    stdout.print(f"stage boundaries: {', '.join(map(str, data['boundaries'])) or 'none'}; phase "
                 f"change {pc.get('start_step')}–{pc.get('end_step')}; inside it: "
                 f"{'—' if inside is None else (', '.join(map(str, inside)) or 'none')}",
                 style="bold", markup=False)
    for note in data["notes"]:
        stdout.print(f"note: {note}", style="dim", markup=False)
