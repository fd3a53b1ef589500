"""``induct dynamics``: phase change, induction onsets, loss drop and lag fit of a training run."""

from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonFlag, print_json, stdout


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def dynamics(
    run_dir: Annotated[Path, typer.Argument(help="A training run directory (induct train --out).")],
    json_out: JsonFlag = False,
    sigma: Annotated[float, typer.Option(help="Gaussian smoothing width, in evaluations.")] = 1.0,
    figures: Annotated[bool, typer.Option(help="Write PNG figures under RUN_DIR/figures/.")] = True,
) -> None:
    """Training dynamics of a run: phase-change window, per-head onset, loss drop, lag fit."""
    from induction_toolkit.dynamics import run_dynamics
    from induction_toolkit.errors import ConfigError
    from induction_toolkit.run_dir import figures_dir, read_metrics

    if sigma < 0:
        raise ConfigError(f"--sigma must be ≥ 0, got {sigma}")
    dyn = run_dynamics(run_dir, sigma=sigma)
    written = []
    if figures:
        from induction_toolkit.viz.dynamics_figures import write_dynamics_figures

        written = write_dynamics_figures(read_metrics(run_dir), dyn, figures_dir(run_dir))
    data = dyn.to_dict()
    data["figures"] = [str(p) for p in written]
    if json_out:
        print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"dynamics · {run_dir}", header_style="bold")
    for col in ("head", "final PM", "final prev", "onset", "lag τ", "R² (blog form)"):
        table.add_column(col, justify="right")
    strongest = dyn.strongest_head
    for h in sorted(dyn.heads, key=lambda h: -h.final_prefix_matching):
        table.add_row(f"L{h.layer}H{h.head}", f"{h.final_prefix_matching:.3f}",
                      f"{h.final_previous_token:.3f}", _num(h.onset_step, "d"),
                      _num(h.lag_steps, "+.0f"), _num(h.r2, ".3f"),
                      style="bold green" if (h.layer, h.head) == strongest else None)
    stdout.print(table)
    lag = dyn.lag
    ci = "—" if lag.ci95 is None else f"[{lag.ci95[0]:+.0f}, {lag.ci95[1]:+.0f}]"
    phase = ("none" if dyn.phase_start is None else
             f"steps {dyn.phase_start}–{dyn.phase_end} (steepest ICL drop at {dyn.phase_peak})")
    stdout.print(f"phase change: {phase}; induction onset {_num(dyn.induction_onset_step, 'd')} "
                 f"(L{strongest[0]}H{strongest[1]}); loss drop {_num(dyn.loss_drop_step, 'd')}",
                 style="bold", markup=False)
    stdout.print(f"lag τ = t_score − t_loss = {_num(lag.steps, '+.0f')} steps, 95% CI {ci} "
                 f"(positive: the score lags the loss); blog-form R² {_num(lag.r2, '.3f')} vs "
                 f"null {_num(lag.null_r2, '.3f')} (best of {lag.n_null_heads} non-induction "
                 f"heads); logistic fits R² score {_num(lag.r2_score_fit, '.3f')}, loss "
                 f"{_num(lag.r2_loss_fit, '.3f')}", style="bold", markup=False)
    stdout.print(f"ICL score: {dyn.icl_score_source}", style="dim", markup=False)
    from induction_toolkit.musat.proxies import proxy_line

    if (line := proxy_line(dyn.musat_proxies)) is not None:
        stdout.print(line, markup=False)
    for p in written:
        stdout.print(f"figure: {p}", style="dim", markup=False)
    for note in dyn.notes:
        stdout.print(f"note: {note}", style="dim", markup=False)
