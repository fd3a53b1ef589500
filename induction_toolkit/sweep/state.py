"""A sweep directory's state: the manifest ``sweep.json``, the coordinator lock, run states.

A sweep directory ``OUT`` holds one ordinary run directory per grid point, ``OUT/sweep.json``
(the base config, the grid and, per run, its parameters, state, error, attempts and summary;
written atomically by the coordinator only) and ``OUT/.sweep.lock``, held (``flock``) by the
coordinator while it runs, so ``--status`` can tell a live sweep from a killed one and two
coordinators never share a directory. Nothing here imports torch.
"""

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import ConfigError, RunDirError
from ..run_dir import list_checkpoints, read_metrics, read_run_config

MANIFEST_FILENAME = "sweep.json"
LOCK_FILENAME = ".sweep.lock"
FIGURES_DIRNAME = "figures"
MANIFEST_FORMAT = 1
# Run states in the manifest; "done" and "failed" are final for one invocation.
STATES = ("pending", "running", "done", "failed", "interrupted")


def manifest_path(out: str | Path) -> Path:
    """Path of a sweep's ``sweep.json``."""
    return Path(out) / MANIFEST_FILENAME


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The sweep's manifest; ``RunDirError`` when ``out`` is not a sweep directory."""
    path = manifest_path(out)
    if not path.is_file():
        raise RunDirError(f"{out} is not a sweep directory (no {MANIFEST_FILENAME})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise RunDirError(f"{path} is not a sweep manifest")
    return data


def write_manifest(out: str | Path, manifest: dict[str, Any]) -> None:
    """Replace ``sweep.json`` atomically (only the coordinator writes it)."""
    atomic_write_text(manifest_path(out), json.dumps(manifest, indent=2, allow_nan=False) + "\n")


class SweepLock:
    """The coordinator's exclusive lock on a sweep directory (released when its process dies)."""

    def __init__(self, out: str | Path):
        self.path = Path(out) / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``ConfigError`` when another coordinator holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"a sweep is already running in {self.path.parent} "
                              f"(see induct sweep --status {self.path.parent})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def coordinator_alive(out: str | Path) -> bool:
    """True while a coordinator holds the sweep's lock."""
    path = Path(out) / LOCK_FILENAME
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def run_progress(run_dir: str | Path) -> dict[str, Any]:
    """What a run directory shows now: last evaluated step, its losses and the best
    prefix-matching so far (``None`` where not yet measured), and whether it reached its steps."""
    run_dir = Path(run_dir)
    info: dict[str, Any] = {"step": None, "steps": None, "eval_loss": None, "train_loss": None,
                            "best_prefix_matching": None, "finished": False}
    try:
        steps = read_run_config(run_dir)["train"]["steps"]
        rows = read_metrics(run_dir)
    except RunDirError:
        return info
    info["steps"] = steps
    if rows:
        last = rows[-1]
        info.update(step=last["step"], eval_loss=last.get("eval_loss"),
                    train_loss=last.get("train_loss"))
        pms = [max(max(r) for r in row["prefix_matching"]) for row in rows
               if row.get("prefix_matching")]
        info["best_prefix_matching"] = max(pms) if pms else None
    ckpts = list_checkpoints(run_dir)
    info["finished"] = bool(ckpts) and max(ckpts) >= steps and bool(rows) and rows[-1]["step"] >= steps
    return info


def is_finished(run_dir: str | Path, steps: int) -> bool:
    """True when the run in ``run_dir`` has its checkpoint and metrics row at ``steps``."""
    ckpts = list_checkpoints(run_dir)
    if not ckpts or max(ckpts) < steps:
        return False
    rows = read_metrics(run_dir)
    return bool(rows) and rows[-1]["step"] >= steps


@dataclass
class RunStatus:
    """One run of a sweep as ``--status`` shows it."""

    name: str
    params: dict[str, Any]
    state: str
    step: int | None
    steps: int | None
    error: str | None = None
    attempts: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the run's status."""
        return {"name": self.name, "params": self.params, "state": self.state, "step": self.step,
                "steps": self.steps, "error": self.error, "attempts": self.attempts,
                **self.summary}


@dataclass
class SweepStatus:
    """Where a sweep directory stands: whether a coordinator runs, and each run's state."""

    out: Path
    running: bool
    runs: list[RunStatus]

    def counts(self) -> dict[str, int]:
        """``{state: number of runs}`` for the states present."""
        counts: dict[str, int] = {}
        for r in self.runs:
            counts[r.state] = counts.get(r.state, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the directory, whether it is running, counts and runs."""
        return {"out": str(self.out), "coordinator_running": self.running,
                "counts": self.counts(), "runs": [r.to_dict() for r in self.runs]}


def sweep_status(out: str | Path) -> SweepStatus:
    """The state of every run of the sweep in ``out``: done, running, failed, pending, or
    interrupted (was running when its coordinator died; the next invocation resumes it)."""
    out = Path(out)
    manifest = read_manifest(out)
    alive = coordinator_alive(out)
    runs = []
    for name, entry in manifest["runs"].items():
        progress = run_progress(out / name)
        state = entry.get("state", "pending")
        if state == "running" and not alive:
            state = "interrupted"
        if state != "done" and progress["finished"] and not alive:
            state = "done"
        runs.append(RunStatus(name=name, params=entry.get("params", {}), state=state,
                              step=progress["step"], steps=progress["steps"],
                              error=entry.get("error"), attempts=entry.get("attempts", 0),
                              summary=entry.get("summary") or {}))
    return SweepStatus(out=out, running=alive, runs=runs)
