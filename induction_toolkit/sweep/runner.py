"""``run_sweep``: check everything, lock the sweep directory, run what is left, summarise.

Order of work: expand and check the grid; check that every run directory can hold its run (a
directory holding another config is refused); check the backend (Ray importable, ``address``
reachable); only then take the lock, write ``sweep.json`` and start workers. So a bad grid, a bad
address or a missing Ray starts nothing. Finished runs are skipped, partial ones resumed (the
training loop's bit-for-bit resume), failed ones retried.
"""

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..run_dir import CHECKPOINT_DIR, config_path, read_run_config
from ..training.config import TrainConfig
from .grid import MODEL_PREFIX, SweepPoint, as_config, expand_grid
from .result import SweepResult, SweepRun
from .state import (FIGURES_DIRNAME, LOCK_FILENAME, MANIFEST_FILENAME, MANIFEST_FORMAT,
                    SweepLock, is_finished, read_manifest, run_progress, write_manifest)

BACKENDS = ("local", "ray")
# How often the coordinator polls run directories for the live table (seconds).
POLL_S = 0.5
LOGS_DIRNAME = "logs"


@dataclasses.dataclass
class RunView:
    """One row of the live table: a run's state and its latest evaluation."""

    name: str
    params: dict[str, Any]
    state: str
    step: int | None = None
    steps: int | None = None
    loss: float | None = None
    best_prefix_matching: float | None = None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a sweep directory")
    if out.is_dir() and not (out / MANIFEST_FILENAME).is_file():
        extra = [p.name for p in out.iterdir() if p.name != LOCK_FILENAME]
        if extra:
            raise ConfigError(f"--out {out} is a non-empty directory that is not a sweep")


def _check_point(point: SweepPoint, run_dir: Path) -> None:
    from ..models import _INIT_FIELDS
    from ..training.loop import build_run_model_config

    for key in point.params:
        if key.startswith(MODEL_PREFIX) and key[len(MODEL_PREFIX):] not in _INIT_FIELDS:
            raise ConfigError(f"grid {key}: the model config has no field "
                              f"'{key[len(MODEL_PREFIX):]}'")
    build_run_model_config(point.config)  # unknown preset/task/option, bad model overrides
    if config_path(run_dir).is_file():
        stored = TrainConfig.from_dict(read_run_config(run_dir)["train"])
        diff = point.config.same_run(stored)
        if diff:
            raise ConfigError(f"{run_dir} holds a run with another config (differs in "
                              f"{', '.join(diff)}); use another --out")
    elif run_dir.is_dir() and any(p.name != CHECKPOINT_DIR for p in run_dir.iterdir()):
        raise ConfigError(f"{run_dir} is a non-empty directory that is not a run")


def _sizing(backend: str, n_todo: int, workers: int | None, threads: int | None,
            address: str | None) -> tuple[int | None, int]:
    from .local import available_cpus

    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be ≥ 1, got {value}")
    if backend == "ray" and address is not None:  # a cluster: Ray places runs by resources
        return workers, threads or 1
    cpus = available_cpus()
    workers = workers or max(1, min(n_todo, cpus))
    return workers, threads or max(1, cpus // workers)


def make_backend(backend: str, *, workers: int | None, threads: int, log_dir: Path,
                 address: str | None) -> Any:
    """The backend object (nothing started yet); ``ConfigError`` for an unknown name, Ray
    missing or an unreachable ``address``."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    if backend == "local":
        if address is not None:
            raise ConfigError("--address is for --backend ray")
        from .local import LocalBackend

        return LocalBackend(workers or 1, threads, log_dir)
    from .ray_backend import RayBackend

    return RayBackend(address, threads, workers)


def _new_entry(point: SweepPoint) -> dict[str, Any]:
    return {"params": point.params, "state": "pending", "error": None, "attempts": 0,
            "summary": None, "wall_s": None}


def run_sweep(base: TrainConfig | dict[str, Any], grid: dict[str, list[Any]], out: str | Path, *,
              backend: str = "local", workers: int | None = None, threads: int | None = None,
              address: str | None = None, progress: bool = False, wandb: str | None = None,
              figures: bool = True,
              on_update: Callable[[list[RunView]], None] | None = None) -> SweepResult:
    """Train every point of ``grid`` applied to ``base`` into ``out/<run-name>``.

    ``backend`` "local" (a process pool of ``workers`` processes, default one per CPU, with
    ``threads`` torch threads each, default CPUs ÷ workers) or "ray" (Ray tasks; ``address``
    joins a running cluster, else a local one is started). ``progress``: a live table on stderr;
    ``on_update``: called with the runs' ``RunView``s about twice a second. ``wandb``: a
    Weights & Biases project; every run logs to it, grouped by the sweep directory's name.
    ``figures``: write the summary figures to ``out/figures``. Returns every run (done, failed,
    or skipped when an earlier invocation finished it); a failed run does not stop the others.
    """
    t0 = time.perf_counter()
    base = as_config(base)
    points = expand_grid(base, grid)
    out = Path(out)
    _check_out(out)
    for point in points:
        _check_point(point, out / point.name)
    finished = {p.name for p in points if is_finished(out / p.name, p.config.steps)}
    todo = [p for p in points if p.name not in finished]
    workers, threads = _sizing(backend, len(todo), workers, threads, address)
    runner = make_backend(backend, workers=workers, threads=threads, address=address,
                          log_dir=out / LOGS_DIRNAME)

    lock = SweepLock(out)
    lock.acquire()
    try:
        manifest = _open_manifest(out, base, grid)
        for p in points:
            entry = manifest["runs"].setdefault(p.name, _new_entry(p))
            entry["params"] = p.params
            if p.name in finished:
                entry["state"] = "done"
                if not entry.get("summary"):
                    from .summary import summarize_run

                    entry["summary"] = summarize_run(out / p.name)
            else:
                entry.update(state="pending", error=None)
        write_manifest(out, manifest)
        if todo:
            _run(runner, todo, out, manifest, threads, wandb, progress, on_update)
        runs = [SweepRun(name=p.name, params=p.params,
                         state="skipped" if p.name in finished else manifest["runs"][p.name]["state"],
                         run_dir=out / p.name, error=manifest["runs"][p.name].get("error"),
                         summary=manifest["runs"][p.name].get("summary") or {},
                         attempts=manifest["runs"][p.name].get("attempts", 0),
                         wall_s=manifest["runs"][p.name].get("wall_s"))
                for p in points]
        result = SweepResult(out=out, runs=runs, backend=backend, grid=grid,
                             wall_s=time.perf_counter() - t0, workers=workers, threads=threads)
        if figures:
            from .figures import write_sweep_figures

            result.figures = write_sweep_figures(result, out / FIGURES_DIRNAME)
        if wandb:
            from ..wandb_log import log_sweep_summary

            log_sweep_summary(result, project=wandb, group=sweep_group(out))
        result.wall_s = time.perf_counter() - t0
        return result
    finally:
        lock.release()


def sweep_group(out: Path) -> str:
    """The Weights & Biases group of a sweep's runs: the sweep directory's name."""
    return Path(out).resolve().name


def _open_manifest(out: Path, base: TrainConfig, grid: dict[str, list[Any]]) -> dict[str, Any]:
    manifest = read_manifest(out) if (out / MANIFEST_FILENAME).is_file() else {
        "format": MANIFEST_FORMAT, "runs": {}}
    manifest["base"] = base.to_dict()
    manifest["grid"] = grid
    return manifest


def _run(runner: Any, todo: list[SweepPoint], out: Path, manifest: dict[str, Any], threads: int,
         wandb: str | None, progress: bool,
         on_update: Callable[[list[RunView]], None] | None) -> None:
    from contextlib import nullcontext

    live = None
    if progress:
        from .live import LiveTable

        live = LiveTable()
    queue = deque(todo)
    running: dict[str, SweepPoint] = {}
    views = {p.name: RunView(p.name, p.params, "pending", steps=p.config.steps) for p in todo}

    def record(name: str, outcome: dict[str, Any]) -> None:
        entry = manifest["runs"][name]
        entry.update(state=outcome["state"], error=outcome.get("error"),
                     wall_s=outcome.get("wall_s"))
        if outcome.get("summary") is not None:
            entry["summary"] = outcome["summary"]
        views[name].state = outcome["state"]
        running.pop(name, None)

    def refresh() -> None:
        for name in running:
            p = run_progress(out / name)
            v = views[name]
            v.step, v.steps = p["step"], p["steps"] or v.steps
            v.loss = p["eval_loss"]
            v.best_prefix_matching = p["best_prefix_matching"]
        for name, v in views.items():
            s = manifest["runs"][name].get("summary") or {}
            if name not in running and s:
                v.step = s.get("steps_done", v.step)
                v.loss = s.get("final_loss")
                v.best_prefix_matching = s.get("max_prefix_matching")
        rows = list(views.values())
        if live is not None:
            live.update(rows)
        if on_update is not None:
            on_update(rows)

    with live if live is not None else nullcontext():
        try:
            runner.start()
            while queue or running:
                changed = False
                while queue and len(running) < runner.capacity:
                    p = queue.popleft()
                    entry = manifest["runs"][p.name]
                    entry.update(state="running", error=None,
                                 attempts=entry.get("attempts", 0) + 1)
                    views[p.name].state = "running"
                    job = {"name": p.name, "config": p.config.to_dict(),
                           "run_dir": str((out / p.name).resolve()), "threads": threads,
                           "handle_signals": runner.name == "local",
                           "wandb": {"project": wandb, "group": sweep_group(out),
                                     "name": p.name} if wandb else None}
                    runner.submit(job)
                    running[p.name] = p
                    changed = True
                if changed:
                    write_manifest(out, manifest)
                ended = runner.wait(POLL_S)
                for name, outcome in ended:
                    record(name, outcome)
                if ended:
                    write_manifest(out, manifest)
                refresh()
        except BaseException:
            for name, outcome in runner.interrupt():
                record(name, outcome)
            for name in list(running):
                record(name, {"state": "interrupted", "error": "interrupted (resumes on the "
                              "next invocation)"})
            write_manifest(out, manifest)
            raise
        finally:
            runner.close()
