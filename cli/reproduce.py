"""``induct reproduce EXPERIMENT``: re-run a published result (``blog``, ``reddy``, ``musat``)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import JsonFlag, print_json, stderr, stdout

EXPERIMENTS = ("blog", "reddy", "musat")


def reproduce(
    experiment: Annotated[str, typer.Argument(help="Which result: blog, reddy or musat.")],
    more_seeds: Annotated[Optional[list[str]], typer.Argument(hidden=True)] = None,
    seeds: Annotated[Optional[list[str]], typer.Option(help="Seeds, e.g. --seeds 0 1 2 (default 0 1 2).")] = None,
    quick: Annotated[bool, typer.Option(help="Scaled-down run: minutes on two CPU cores.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Directory for the runs, OUT/<init>/seed_N (default runs/blog[-quick]).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    inits: Annotated[str, typer.Option(help="Embedding inits to run, comma-separated: unit (N(0, 1), blog-4l's default), tl (TransformerLens' N(0, 0.8/√d_model)). Default both.")] = "unit,tl",
    json_out: JsonFlag = False,
    figures: Annotated[Optional[str], typer.Option(help="reddy: figures to reproduce, comma-separated (1d,2a,2b,2c,3,4,a5; default all).")] = None,
    n_values: Annotated[Optional[list[str]], typer.Option("--N", help="musat: context sizes N, e.g. --N 4 8 16 32.")] = None,
    threshold: Annotated[float, typer.Option(help="musat: emergence threshold of the pseudo-parameters (0.1 is also reported).")] = 0.5,
) -> None:
    """Reproduce a result. blog: 4-layer transformer on the copying task, 3 seeds, both inits, lag fits. reddy: Reddy (2023)'s figures (in-context vs in-weights classification). musat: the disentangled transformer's emergence time against N."""
    from induction_toolkit.errors import ConfigError

    if experiment == "musat":
        from .reproduce_musat import run_musat

        return run_musat(n_values=n_values, seeds=(seeds or []) + (more_seeds or []), threshold=threshold,
                         quick=quick, out=out, json_out=json_out)

    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{experiment}'; choose one of: {', '.join(EXPERIMENTS)}")
    if more_seeds and seeds is None:
        raise ConfigError(f"unexpected argument(s): {' '.join(more_seeds)}")
    parsed = []
    for raw in (seeds or []) + (more_seeds or []):
        for part in raw.split(","):
            try:
                parsed.append(int(part))
            except ValueError:
                raise ConfigError(f"--seeds takes integers, got '{part}'") from None
    if experiment == "reddy":
        from .reproduce_reddy import reproduce_reddy_cli

        return reproduce_reddy_cli(seeds=tuple(dict.fromkeys(parsed)) or None, quick=quick, out=out,
                                   figures=figures, json_out=json_out)
    if figures is not None:
        raise ConfigError("--figures applies to 'reproduce reddy'")
    seed_tuple = tuple(dict.fromkeys(parsed)) or (0, 1, 2)
    init_tuple = tuple(dict.fromkeys(i.strip() for i in inits.split(",") if i.strip()))
    out = out or Path("runs") / ("blog-quick" if quick else "blog")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is an existing file")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from induction_toolkit.reproduce.blog import INITS, LAYER_NOTE, reproduce_blog

    unknown = [i for i in init_tuple if i not in INITS]
    if unknown or not init_tuple:
        raise ConfigError(f"--inits takes a comma-separated list of: {', '.join(INITS)}; got '{inits}'")

    with Progress(TextColumn("[bold]{task.fields[init]} seed {task.fields[seed]}"), BarColumn(),
                  MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TextColumn("best PM {task.fields[pm]}"),
                  TimeRemainingColumn(), console=stderr, disable=json_out) as bar:
        tasks = {}

        def on_step(init, seed, p):
            if (init, seed) not in tasks:
                tasks[init, seed] = bar.add_task("", total=p.total, init=init, seed=seed, loss="-", pm="-")
            bar.update(tasks[init, seed], completed=p.step, loss=f"{p.loss:.3f}",
                       pm=f"{p.best_prefix_matching:.2f}")

        result = reproduce_blog(out, seeds=seed_tuple, quick=quick, inits=init_tuple, device=device,
                                progress=on_step)
    if json_out:
        print_json(result.to_dict())
        return
    stdout.print(result.to_table())
    for init, summary in result.to_dict()["inits"].items():
        stdout.print(f"{init}: strongest head in layer(s) {', '.join(map(str, summary['layers']))} "
                     f"(0-based); figure: {result.figures[init]}", markup=False)
    stdout.print(f"{LAYER_NOTE}; {result.wall_s:.0f} s", markup=False)
