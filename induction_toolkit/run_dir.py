"""The run-directory format: every file name, the writers and the readers.

A training run directory holds

- ``config.json``: the ``TrainConfig``, the model config, the task and the toolkit version;
- ``metrics.jsonl``: one JSON object per evaluation (``step`` first), oldest first;
- ``checkpoints/step_XXXXXXX.safetensors``: the weights at each scheduled step;
- ``figures/``: PNGs drawn from the metrics;
- ``train_state.pt``: optimizer, RNG streams and loop counters of the latest checkpoint.

This module is the only place that spells those names. Analysis and presentation read runs
through it, never through the training loop, and it imports no torch or TransformerLens, so
reading a run's metrics is cheap. Every write is atomic (temp file, fsync, rename): a crash, a
full disk or a kill leaves the previous file or the new one, never half of one.
"""

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import CheckpointError, RunDirError

CONFIG_FILENAME = "config.json"
METRICS_FILENAME = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
FIGURES_DIR = "figures"
STATE_FILENAME = "train_state.pt"
STAGES_FILENAME = "stages.json"  # written by ``induct stages`` (induction_toolkit.stages)
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.safetensors$")


class MetricRows(list):
    """The metrics rows of a run (a plain list of dicts) plus ``notes`` on anything skipped."""

    def __init__(self, rows: Iterable[dict[str, Any]] = (), notes: Iterable[str] = ()):
        super().__init__(rows)
        self.notes: list[str] = list(notes)


# --- names ------------------------------------------------------------------------------------

def checkpoint_name(step: int) -> str:
    """File name of the checkpoint at ``step`` (zero-padded so names sort by step)."""
    return f"step_{int(step):07d}.safetensors"


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """Path of the checkpoint at ``step`` inside ``run_dir`` (it may not exist yet)."""
    return Path(run_dir) / CHECKPOINT_DIR / checkpoint_name(step)


def config_path(run_dir: str | Path) -> Path:
    """Path of the run's ``config.json``."""
    return Path(run_dir) / CONFIG_FILENAME


def metrics_path(run_dir: str | Path) -> Path:
    """Path of the run's ``metrics.jsonl``."""
    return Path(run_dir) / METRICS_FILENAME


def figures_dir(run_dir: str | Path) -> Path:
    """Path of the run's ``figures/`` folder (it may not exist yet)."""
    return Path(run_dir) / FIGURES_DIR


def state_path(run_dir: str | Path) -> Path:
    """Path of the run's ``train_state.pt`` (resume state of the latest checkpoint)."""
    return Path(run_dir) / STATE_FILENAME


def stages_path(run_dir: str | Path) -> Path:
    """Path of the run's ``stages.json`` (LLC per checkpoint and stage boundaries)."""
    return Path(run_dir) / STAGES_FILENAME


def read_stages(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's saved ``induct stages`` result, or None when it has none (or it is unreadable)."""
    try:
        data = json.loads(stages_path(run_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "boundaries" in data else None


def write_stages(run_dir: str | Path, data: dict[str, Any]) -> Path:
    """Write the ``induct stages`` result into the run directory, atomically."""
    return atomic_write_text(stages_path(run_dir), json.dumps(data, indent=1) + "\n")


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory laid out as a training run (it has ``checkpoints/``)."""
    return (Path(path) / CHECKPOINT_DIR).is_dir()


# --- checkpoints ------------------------------------------------------------------------------

def list_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """``{step: path}`` of a run directory's checkpoints, sorted by step (empty when none)."""
    ckdir = Path(run_dir) / CHECKPOINT_DIR
    found = {}
    for f in ckdir.iterdir() if ckdir.is_dir() else ():
        m = CHECKPOINT_PATTERN.match(f.name)
        if m:
            found[int(m.group(1))] = f
    return dict(sorted(found.items()))


def run_checkpoint(run_dir: str | Path, step: int | None = None) -> Path:
    """Path of the checkpoint at ``step`` (default: the latest); ``CheckpointError`` if absent."""
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise CheckpointError(f"run directory {run_dir} has no checkpoints yet")
    if step is None:
        return ckpts[max(ckpts)]
    if step not in ckpts:
        near = ", ".join(str(s) for s in list(ckpts)[:8])
        raise CheckpointError(f"run {run_dir} has no checkpoint at step {step}; "
                              f"available: {near}{' …' if len(ckpts) > 8 else ''}")
    return ckpts[step]


# --- readers ----------------------------------------------------------------------------------

def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.json`` as a dict, checked to hold a valid training config."""
    from .training.config import TrainConfig  # dataclasses only: no torch behind it

    path = config_path(run_dir)
    if not Path(run_dir).is_dir() or not path.is_file():
        raise RunDirError(f"{run_dir} is not a training run (no {CONFIG_FILENAME})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        TrainConfig.from_dict(data["train"])
    except (ValueError, KeyError, TypeError) as exc:  # includes ConfigError, UnicodeDecodeError
        raise RunDirError(f"{path} is not a training run config ({exc})") from None
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror}") from None
    return data


def read_metrics(run_dir: str | Path) -> MetricRows:
    """Every metrics row of the run, oldest first (empty when it has not evaluated yet).

    A torn last line (a copy or a writer interrupted mid-line) is left out and named in the
    result's ``notes``; a damaged line anywhere else is a ``RunDirError``.
    """
    path = metrics_path(run_dir)
    if not path.is_file():
        return MetricRows()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunDirError(f"cannot read {path}: {exc.strerror}") from None
    lines = [(i, line) for i, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
    rows, notes, shapes = [], [], {}
    for k, (number, line) in enumerate(lines):
        try:
            row = json.loads(line.decode("utf-8"))
        except ValueError:  # also UnicodeDecodeError: a line cut inside a multi-byte character
            row = None
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            _check_shapes(row, shapes, path, number)
            rows.append(row)
            continue
        if k == len(lines) - 1:
            notes.append(f"{METRICS_FILENAME}: line {number}, the last, is incomplete or damaged "
                         "(a write was interrupted); left out")
            break
        raise RunDirError(f"{path}: line {number} is not a metrics row (damaged file); the rows "
                          f"after it cannot be trusted")
    return MetricRows(rows, notes)


def _nested_shape(value: list) -> tuple[int, ...] | None:
    """The shape of a rectangular nested list (None when ragged)."""
    if not value or not isinstance(value[0], list):
        return (len(value),)
    inner = {_nested_shape(v) if isinstance(v, list) else None for v in value}
    return (len(value), *inner.pop()) if len(inner) == 1 and None not in inner else None


def _check_shapes(row: dict[str, Any], shapes: dict[str, tuple], path: Path, number: int) -> None:
    """Per-head fields (lists) keep one rectangular shape across the rows of a run."""
    for key, value in row.items():
        if not isinstance(value, list):
            continue
        shape = _nested_shape(value)
        if shape is None or shapes.setdefault(key, shape) != shape:
            raise RunDirError(f"{path}: line {number}: '{key}' has shape "
                              f"{shape or 'ragged'}, not {shapes.get(key)} like the rows before "
                              "it (damaged or mixed-up file)")


def remove_partial_writes(run_dir: str | Path) -> list[Path]:
    """Delete the temp files a killed writer left behind (``atomic``'s ``.NAME.*.tmp``).

    Nothing ever reads them (the rename that would publish one never happened); called when a
    run resumes, so kills do not pile up half-files. Returns what was removed.
    """
    run_dir = Path(run_dir)
    gone = []
    for folder in (run_dir, run_dir / CHECKPOINT_DIR, run_dir / FIGURES_DIR):
        for f in folder.glob(".*.tmp") if folder.is_dir() else ():
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


# --- writers ----------------------------------------------------------------------------------

def create_run_dir(run_dir: str | Path, config: dict[str, Any]) -> Path:
    """Write ``config.json`` (atomically) and the empty ``checkpoints/`` and ``figures/``."""
    run_dir = Path(run_dir)
    atomic_write_text(config_path(run_dir), json.dumps(config, indent=2) + "\n")
    (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    figures_dir(run_dir).mkdir(parents=True, exist_ok=True)
    return run_dir


def write_metrics(run_dir: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Replace ``metrics.jsonl`` with ``rows``, one JSON object per line, atomically.

    Rewritten whole rather than appended: a crash leaves the old file or the new one, so a reader
    never sees a torn line from this writer. NaN/inf are refused (JSON cannot carry them).
    """
    text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
    return atomic_write_text(metrics_path(run_dir), text)
