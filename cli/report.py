"""``induct report``: one self-contained HTML file about a checkpoint or a training run."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import ConfigFile, NHeads, model_config, DeviceOpt, TokenSeed, print_json, stderr


def report(
    path: Annotated[str, typer.Argument(help="Checkpoint file or run directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the HTML file.")] = Path("report.html"),
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document (what was written) and nothing else.")] = False,
    top: Annotated[int, typer.Option(help="Heads shown per kind in the attention patterns.")] = 3,
    seq_len: Annotated[int, typer.Option(help="Random tokens per segment for the scores (shrunk to fit the context).")] = 25,
    repeats: Annotated[int, typer.Option(help="How many times the segment repeats.")] = 4,
    batch: Annotated[int, typer.Option(help="Number of sequences scored.")] = 32,
    seed: TokenSeed = 0,
    config: ConfigFile = None,
    n_heads: NHeads = None,
    step: Annotated[Optional[int], typer.Option(help="Checkpoint step, for a run directory (default: the last).")] = None,
    device: DeviceOpt = None,
) -> None:
    """Write ONE HTML file that opens without a network: model, scores, attention patterns, evidence."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from induction_toolkit.errors import ConfigError
    from induction_toolkit.report import ReportOptions, build_report
    from induction_toolkit.viz.report import render

    for name, value in (("--seq-len", seq_len), ("--batch", batch), ("--top", top)):
        if value < 1:
            raise ConfigError(f"{name} must be ≥ 1, got {value}")
    if repeats < 2:
        raise ConfigError(f"--repeats must be ≥ 2, got {repeats}")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file path such as report.html")
    options = ReportOptions(seq_len=seq_len, repeats=repeats, batch=batch, seed=seed, top=top)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=stderr, transient=True) as progress:
        task = progress.add_task("loading", total=None)
        report = build_report(path, options=options, step=step, config=model_config(config, n_heads), device=device,
                              on_section=lambda key: progress.update(task, description=key))
        progress.update(task, description="writing HTML")
        page = render(report)
        written = page.save(out)
    size = written.stat().st_size
    if json_out:
        print_json({"out": str(out), "bytes": size, **page.to_dict(), **report.to_dict()})
        return
    stderr.print(f"wrote {out} ({size / 1e6:.1f} MB): {', '.join(report.sections)}")
    for key, why in report.omitted.items():
        stderr.print(f"note: section '{key}' left out: {why}", style="dim", markup=False)
