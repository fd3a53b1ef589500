"""What ``induct ablate`` and ``induct patch`` share: loading, the prompts, a progress bar."""

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from ._common import stderr


def load_for_causal(path: str, *, config: Optional[Path | dict], step: Optional[int], device: Optional[str],
                    seq_len: int, repeats: int, batch: int, seed: int):
    """(loaded model, causal inputs, notes), with option errors raised before any work.

    The inputs come from the run's task (``induction_toolkit.analysis_data``): repeated tokens for a
    token model, the task's own sets for a run like Reddy's.
    """
    from induction_toolkit.analysis_data import analysis_data
    from induction_toolkit.errors import ConfigError

    if batch < 1:
        raise ConfigError(f"--batch must be ≥ 1, got {batch}")
    if repeats < 2:
        raise ConfigError(f"--repeats must be ≥ 2, got {repeats}")
    if seq_len < 2:
        raise ConfigError(f"--seq-len must be ≥ 2, got {seq_len}")
    data = analysis_data(path, config=config, device=device, step=step)
    inputs = data.causal(seq_len=seq_len, repeats=repeats, batch=batch, seed=seed)
    return data.loaded, inputs, data.loaded.notes + inputs.notes


def model_info(loaded, path: str) -> dict:
    """The loaded model's config summary plus its path, source and step, as a JSON-ready dict."""
    from induction_toolkit.models import config_summary

    return {**config_summary(loaded.model.cfg), "path": str(path), "source": loaded.source,
            "step": loaded.step}


@contextmanager
def progress_bar(description: str, total: int):
    """Yields a callback ``advance(n)``; the bar lives on stderr and vanishes when done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=stderr, transient=True,
                  disable=not stderr.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
