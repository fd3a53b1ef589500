"""``induct reproduce reddy``: Reddy (2023)'s figures and claims (called from ``cli/reproduce.py``)."""

from pathlib import Path
from typing import Optional

from ._common import print_json, stderr, stdout


def reproduce_reddy_cli(*, seeds: tuple[int, ...] | None, quick: bool, out: Optional[Path],
                        figures: Optional[str], json_out: bool) -> None:
    """Check the options, run the reproduction with a progress bar, print the claims table."""
    from induction_toolkit.errors import ConfigError
    from induction_toolkit.reproduce.reddy import FIGURES

    figs = tuple(f.strip().lower() for f in (figures or ",".join(FIGURES)).split(",") if f.strip())
    bad = [f for f in figs if f not in FIGURES]
    if bad or not figs:
        raise ConfigError(f"--figures takes a comma-separated list of: {', '.join(FIGURES)}; "
                          f"got '{figures}'")
    out = out or Path("runs") / ("reddy-quick" if quick else "reddy")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is an existing file")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from induction_toolkit.reproduce.reddy import reproduce_reddy

    with Progress(TextColumn("[bold]reddy runs"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=stderr, disable=json_out) as bar:
        t = bar.add_task("runs", total=None)
        result = reproduce_reddy(out, figures=figs, seeds=seeds or (0,), quick=quick,
                                 progress=lambda done, total: bar.update(t, completed=done, total=total))
    if json_out:
        print_json(result.to_dict())
        return
    table = Table(title=f"Reddy 2023 ({result.scale})", show_lines=True)
    for col in ("figure", "paper", "ours", "holds"):
        table.add_column(col)
    for c in result.claims:
        table.add_row(c["figure"], c["paper"], c["ours"], "yes" if c["holds"] else "[red]no")
    stdout.print(table)
    for d in result.deviations:
        stdout.print(f"deviation: {d}", markup=False)
    stdout.print(f"figures in {out / 'figures'}; summary {out / 'reddy_summary.json'}; "
                 f"{result.wall_s:.0f} s", markup=False)
