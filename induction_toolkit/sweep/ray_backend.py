"""The Ray backend: each run is a Ray task declaring its CPUs (and a GPU where the cluster has
them), placed by Ray's scheduler on a local cluster (``ray.init()``) or an existing one
(``address``, a head started with ``ray start --head``).

**Storage: shared.** Tasks write their run directory straight into ``OUT/<run>``, so every node
must see ``OUT`` at the same path: on one machine that is always true; on a cluster put ``OUT``
on a shared filesystem (NFS, a mounted bucket). Copying results back from workers' local disks
(the task returning its run directory as an archive for the driver to unpack) is not
implemented: it would also have to ship a killed run's partial directory out again to resume it.
A task that cannot see ``OUT`` fails with that message instead of training into a directory
nobody reads. Ray is imported only here, and only when this backend is chosen.
"""

import importlib.util
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import ConfigError

# How long to try an --address before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


def check_ray_installed() -> None:
    """``ConfigError`` (nothing started) when Ray is not importable."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("the ray backend needs Ray: pip install 'induction-toolkit[ray]'")


def check_address(address: str) -> None:
    """``ConfigError`` unless ``address`` (``host:port``, ``ray://host:port`` or ``auto``) answers
    a TCP connection within ``CONNECT_TIMEOUT_S``."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address must look like HOST:PORT or ray://HOST:PORT, got '{address}'")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot reach a Ray cluster at {address}: "
                          f"{exc.strerror or exc}") from None


def _ray_task(job: dict[str, Any]) -> dict[str, Any]:
    run_dir = Path(job["run_dir"])
    if not run_dir.parent.is_dir():
        return {"state": "failed", "summary": None, "resumed_from": None, "wall_s": None,
                "error": f"this Ray node ({socket.gethostname()}) cannot see {run_dir.parent}: "
                         "put --out on storage shared by every node"}
    os.environ["OMP_NUM_THREADS"] = str(job.get("threads") or 1)
    from induction_toolkit.sweep.worker import execute_run

    return execute_run(job)


class RayBackend:
    """Runs as Ray tasks of ``threads`` CPUs each (and ``gpus`` GPUs where the cluster has GPUs)."""

    name = "ray"

    def __init__(self, address: str | None, threads: int, workers: int | None = None,
                 gpus: float | None = None):
        check_ray_installed()
        if address is not None:
            check_address(address)
        self.address, self.threads, self.workers, self.gpus = address, threads, workers, gpus
        self._ray: Any = None
        self._remote: Any = None
        self._started = False
        self._pending: dict[Any, dict[str, Any]] = {}

    @property
    def capacity(self) -> int:
        """Runs in flight at once: ``workers`` when given, else as many as the cluster's CPUs hold."""
        if self.workers:
            return self.workers
        cpus = int(self._ray.cluster_resources().get("CPU", 1)) if self._ray else 1
        return max(1, cpus // self.threads)

    def start(self) -> None:
        """Connect to the cluster (``address``) or start a local one."""
        import ray

        self._ray = ray
        try:
            if not ray.is_initialized():
                kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                              configure_logging=False)
                if self.address is None:
                    # the driver's environment (PYTHONPATH, thread settings) for local workers
                    kwargs["runtime_env"] = {"env_vars": {k: v for k, v in os.environ.items()
                                                          if k in ("PYTHONPATH", "WANDB_MODE",
                                                                   "WANDB_DIR")}}
                    if self.workers:
                        kwargs["num_cpus"] = self.workers * self.threads
                ray.init(address=self.address, **kwargs)
                self._started = True
        except ConfigError:
            raise
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError …
            raise ConfigError(f"cannot start Ray{' at ' + self.address if self.address else ''}: "
                              f"{' '.join(str(exc).split())[:300]}") from None
        gpus = self.gpus
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        self._remote = ray.remote(_ray_task).options(num_cpus=self.threads, num_gpus=gpus,
                                                     max_retries=0)

    def submit(self, job: dict[str, Any]) -> None:
        """Start ``job`` as a Ray task."""
        self._pending[self._remote.remote(job)] = job

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """Outcomes of tasks that ended within ``timeout`` seconds (a task error fails its run)."""
        if not self._pending:
            import time

            time.sleep(timeout)
            return []
        ready, _ = self._ray.wait(list(self._pending), num_returns=len(self._pending),
                                  timeout=timeout)
        done = []
        for ref in ready:
            job = self._pending.pop(ref)
            try:
                outcome = self._ray.get(ref)
            except Exception as exc:  # WorkerCrashedError, RayTaskError, …
                from .worker import one_line_error

                outcome = {"state": "failed", "summary": None, "resumed_from": None,
                           "wall_s": None, "error": f"Ray task failed: {one_line_error(exc)}"[:500]}
            done.append((job["name"], outcome))
        return done

    def interrupt(self) -> list[tuple[str, dict[str, Any]]]:
        """Cancel the tasks in flight (they resume from their last checkpoint next time)."""
        for ref in list(self._pending):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished
                pass
        done = [(job["name"], {"state": "interrupted", "error": "interrupted (resumes on the next "
                               "invocation)", "summary": None, "resumed_from": None,
                               "wall_s": None}) for job in self._pending.values()]
        self._pending.clear()
        return done

    def close(self) -> None:
        """Shut down the local cluster this backend started (a joined cluster keeps running)."""
        if self._started and self._ray is not None:
            self._ray.shutdown()
            self._started = False
