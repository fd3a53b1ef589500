"""What a sweep returns: one ``SweepRun`` per grid point, and the ``--json`` document."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .summary import SUMMARY_KEYS

# States of a run in a sweep's result: trained now, failed now, or finished before this call.
RESULT_STATES = ("done", "failed", "skipped")


@dataclass
class SweepRun:
    """One grid point's outcome: ``state`` is done, failed (with ``error``) or skipped (finished
    by an earlier invocation); ``summary`` holds ``summary.SUMMARY_KEYS`` (None when unknown)."""

    name: str
    params: dict[str, Any]
    state: str
    run_dir: Path
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    wall_s: float | None = None

    def __getattr__(self, name: str) -> Any:
        if name in SUMMARY_KEYS:
            return self.summary.get(name)
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """The run as the ``--json`` contract spells it (plus name, error, extra summary keys)."""
        s = self.summary
        return {"params": dict(self.params), "state": self.state,
                "final_loss": s.get("final_loss"),
                "max_prefix_matching": s.get("max_prefix_matching"),
                "induction_layer": s.get("induction_layer"), "onset_step": s.get("onset_step"),
                "run_dir": str(self.run_dir), "name": self.name, "error": self.error,
                "attempts": self.attempts, "wall_s": self.wall_s,
                **{k: v for k, v in s.items() if k not in ("final_loss", "max_prefix_matching",
                                                           "induction_layer", "onset_step")}}


@dataclass
class SweepResult:
    """Every run of one sweep invocation, in grid order, with the backend and the wall time."""

    out: Path
    runs: list[SweepRun]
    backend: str
    wall_s: float
    grid: dict[str, list[Any]] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    workers: int | None = None
    threads: int | None = None

    @property
    def ok(self) -> bool:
        """True when no run failed."""
        return all(r.state != "failed" for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        """The ``induct sweep --json`` document: ``runs``, ``backend``, ``wall_s`` (and extras)."""
        return {"runs": [r.to_dict() for r in self.runs], "backend": self.backend,
                "wall_s": round(self.wall_s, 3), "out": str(self.out), "grid": self.grid,
                "workers": self.workers, "threads_per_run": self.threads,
                "figures": [str(p) for p in self.figures]}
