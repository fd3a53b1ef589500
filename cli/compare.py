"""``induct compare``: several models of any kind scored the same way, in one table and one figure."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (DeviceOpt, TokenSeed, check_scoring_options, print_json,
                      stderr, stdout)


def compare(
    models: Annotated[list[str], typer.Argument(help="Checkpoint files, run directories, Hugging Face model directories or TransformerLens model names.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document (every head of every model) and nothing else.")] = False,
    out: Annotated[Path, typer.Option(help="Figure with one prefix-matching heatmap per model (.png, .pdf or .svg).")] = Path("compare.png"),
    no_figure: Annotated[bool, typer.Option("--no-figure", help="Do not write the figure.")] = False,
    seq_len: Annotated[int, typer.Option(help="Random tokens per segment (shrunk to fit each model's context).")] = 25,
    repeats: Annotated[int, typer.Option(help="How many times the segment repeats.")] = 4,
    batch: Annotated[int, typer.Option(help="Number of sequences scored per model.")] = 32,
    seed: TokenSeed = 0,
    dtype: Annotated[Optional[str], typer.Option(help="float32 (default), float16 or bfloat16.")] = None,
    device: DeviceOpt = None,
) -> None:
    """Compare models side by side: top induction heads, best prefix-matching score, ICL score."""
    from induction_toolkit.compare import compare_models
    from induction_toolkit.errors import ConfigError
    from induction_toolkit.pretrained import parse_dtype

    check_scoring_options(seq_len, repeats, batch)
    if dtype is not None:
        parse_dtype(dtype)
    if not no_figure and out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ConfigError(f"--out {out}: the figure must be .png, .pdf or .svg")

    from rich.progress import Progress

    with Progress(console=stderr, transient=True) as progress:
        bar = progress.add_task("scoring", total=len(models))

        started: list[str] = []

        def advance(spec: str) -> None:
            progress.update(bar, completed=len(started), description=f"scoring {spec}")
            started.append(spec)

        result = compare_models(models, seq_len=seq_len, repeats=repeats, batch=batch, seed=seed,
                                device=device, dtype=dtype, on_model=advance)
        progress.update(bar, completed=len(models))
    figure = None if no_figure else result.write_figure(out)
    if json_out:
        data = result.to_dict()
        data["figure"] = str(figure) if figure is not None else None
        print_json(data)
        return
    stdout.print(result.to_table(title="induction heads, model by model"))
    if figure is not None:
        stdout.print(f"figure: {figure}", markup=False)
