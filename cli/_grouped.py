"""``induct train --seeds``: several seeds trained as one grouped model, one run directory each."""

import dataclasses
from pathlib import Path

from ._common import stdout


def train_seeds(config, seeds: str, out: Path, *, resume: bool, quiet: bool) -> None:
    """Train (or resume) ``config`` once per seed of ``seeds`` into ``out/seed_N``."""
    from induction_toolkit.training.grouped import (parse_seeds, raise_if_diverged, seed_run_dir,
                                                    train_grouped)

    numbers = parse_seeds(seeds)
    dirs = [seed_run_dir(out, s) for s in numbers]
    configs = None if resume else [dataclasses.replace(config, seed=s) for s in numbers]
    results = train_grouped(configs, dirs, resume=resume, progress=not quiet)
    for r in results:
        if r.diverged:
            stdout.print(f"run {r.run_dir}: diverged ({r.diverged})", style="red")
            continue
        last = r.metrics[-1] if r.metrics else {}
        stdout.print(f"run {r.run_dir}: {r.config.steps} steps; eval loss "
                     f"{last.get('eval_loss', float('nan')):.3f}, repeated-half loss "
                     f"{last.get('loss_repeated_half', float('nan')):.3f}, ICL score "
                     f"{last.get('icl_score', float('nan')):+.3f}")
    stdout.print(f"next: induct score {dirs[0]} · induct dynamics {dirs[0]}", style="dim")
    raise_if_diverged(results)
