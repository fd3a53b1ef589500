"""What ``induct ablate`` and ``induct patch`` share: loading, the prompts, a progress bar."""

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from ._common import stderr


def load_for_causal(path: str, *, config: Optional[Path | dict], step: Optional[int], device: Optional[str],
                    seq_len: int, repeats: int, batch: int, seed: int):
    """(loaded model, task, prompt pair, notes), with option errors raised before any work."""
    from induction_toolkit.causal import causal_task, make_prompt_pair
    from induction_toolkit.checkpoints import load_model
    from induction_toolkit.errors import ConfigError

    if batch < 1:
        raise ConfigError(f"--batch must be ≥ 1, got {batch}")
    if repeats < 2:
        raise ConfigError(f"--repeats must be ≥ 2, got {repeats}")
    if seq_len < 2:
        raise ConfigError(f"--seq-len must be ≥ 2, got {seq_len}")
    loaded = load_model(path, config=config, device=device, step=step)
    task, notes = causal_task(loaded.model, seq_len=seq_len, repeats=repeats,
                              bos_token_id=loaded.bos_token_id, exclude=loaded.special_token_ids)
    pair = make_prompt_pair(task, batch, seed=seed)
    return loaded, task, pair, loaded.notes + notes


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
