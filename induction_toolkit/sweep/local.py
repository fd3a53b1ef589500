"""The local backend: a pool of worker processes on this machine, torch threads divided among them.

Each slot is one long-lived process (a fresh ``python -m induction_toolkit.sweep.local``: no
forked torch state, and unlike multiprocessing's ``spawn`` it never re-imports the caller's
``__main__``, so a script, a notebook or stdin can start a sweep) that trains one run at a time
and answers over a socket pair; its stderr goes to ``OUT/logs/worker-PID.log``. A process that dies mid-run (killed, out of memory) fails that run
only: the slot gets a fresh process and the sweep goes on. Workers ignore Ctrl-C themselves; the
coordinator forwards it, and each busy worker writes a resumable checkpoint at the end of its
step before it stops (``training.loop``'s signal guard). A worker whose coordinator disappears
does the same.
"""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

# Seconds a busy worker gets to checkpoint after an interrupt before it is killed.
INTERRUPT_GRACE_S = 60.0


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _watch_parent(parent: int) -> None:
    # Coordinator gone (killed): stop like an interrupted run, checkpoint first.
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGINT)
            return


def _worker_main(conn: Connection, threads: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when we stop
    os.environ["OMP_NUM_THREADS"] = str(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import torch

    torch.set_num_threads(threads)
    from .worker import execute_run

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        result = execute_run(job)
        try:
            conn.send((job["name"], result))
        except (BrokenPipeError, OSError):
            return
        if result["state"] == "interrupted":
            return


class _Slot:
    def __init__(self, threads: int, log_dir: Path):
        self.conn, child = mp.Pipe(duplex=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with open(log_dir / f"worker-{len(list(log_dir.iterdir()))}.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "induction_toolkit.sweep.local", str(child.fileno()),
                 str(threads), str(os.getpid())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=env)
        child.close()
        self.job: dict[str, Any] | None = None

    def alive(self) -> bool:
        return self.process.poll() is None


class LocalBackend:
    """``workers`` processes with ``threads`` torch threads each."""

    name = "local"

    def __init__(self, workers: int, threads: int, log_dir: Path | None = None):
        self.workers, self.threads = workers, threads
        self.log_dir = Path(log_dir) if log_dir is not None else Path("logs")
        self._slots: list[_Slot] = []

    @property
    def capacity(self) -> int:
        """Runs that may be in flight at once."""
        return self.workers

    def start(self) -> None:
        """Nothing to start up front: processes start with their first run."""

    def submit(self, job: dict[str, Any]) -> None:
        """Hand ``job`` to an idle slot (a new process when none is idle)."""
        slot = next((s for s in self._slots if s.job is None and s.alive()), None)
        if slot is None:
            self._slots = [s for s in self._slots if s.alive() or s.job is not None]
            slot = _Slot(self.threads, self.log_dir)
            self._slots.append(slot)
        slot.job = job
        slot.conn.send(job)

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """Outcomes of runs that ended within ``timeout`` seconds (a dead process fails its run)."""
        busy = [s for s in self._slots if s.job is not None]
        if not busy:
            time.sleep(timeout)
            return []
        ready = wait([s.conn for s in busy], timeout)
        done = []
        for slot in busy:
            if slot.conn in ready:
                try:
                    name, outcome = slot.conn.recv()
                except (EOFError, OSError):  # the process died: its end of the socket closed
                    name, outcome = slot.job["name"], _died(slot)
                done.append((name, outcome))
                slot.job = None
            elif not slot.alive():
                done.append((slot.job["name"], _died(slot)))
                slot.job = None
        self._slots = [s for s in self._slots if s.alive()]
        return done

    def interrupt(self) -> list[tuple[str, dict[str, Any]]]:
        """Ask busy workers to checkpoint and stop; returns what they report."""
        busy = [s for s in self._slots if s.job is not None]
        for slot in busy:
            if slot.alive():
                slot.process.send_signal(signal.SIGINT)
        done = []
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        while any(s.job is not None for s in busy) and time.monotonic() < deadline:
            done += self.wait(0.5)
        return done

    def close(self) -> None:
        """Stop every worker process."""
        for slot in self._slots:
            if slot.alive() and slot.job is None:
                try:
                    slot.conn.send(None)
                except OSError:
                    pass
        for slot in self._slots:
            try:
                slot.process.wait(5)
            except subprocess.TimeoutExpired:
                slot.process.kill()
                slot.process.wait(5)
            slot.conn.close()
        self._slots = []


def _died(slot: _Slot) -> dict[str, Any]:
    try:
        code = slot.process.wait(2)
    except subprocess.TimeoutExpired:
        code = None
    how = (f"killed by signal {-code}" if code is not None and code < 0
           else f"exited with code {code}")
    return {"state": "failed", "error": f"worker process {how} during the run",
            "summary": None, "resumed_from": None, "wall_s": None}


if __name__ == "__main__":
    _worker_main(Connection(int(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3]))
