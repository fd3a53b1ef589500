"""induct sweep's faults and backends (issue 16), with real processes: a killed sweep, a killed
worker, Ray against the local pool, and the summary on a run where an induction head forms."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_sweep import TINY, TINY_CLI

pytestmark = pytest.mark.slow

# Long enough (400 steps) that a kill lands mid-run, short enough to stay cheap.
LONGER = {**TINY, "steps": 400, "eval_every": 10}


def _direct_metrics(config: dict) -> list[dict]:
    """The metrics of ``config`` trained in this process, uninterrupted (1 thread, as the pool)."""
    import torch

    from induction_toolkit.training import TrainConfig, train

    config = TrainConfig(**config) if isinstance(config, dict) else config
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            return train(config, None, handle_signals=False).metrics
    finally:
        torch.set_num_threads(threads)


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def test_killed_sweep_reruns_to_every_run_done_once(tmp_path):
    """SIGKILL the whole sweep (coordinator and workers) mid-way, check --status, run it again:
    finished runs are skipped, killed ones resume, and every run ends equal to an uninterrupted
    training of its config."""
    from induction_toolkit.run_dir import list_checkpoints, read_metrics, read_run_config
    from induction_toolkit.sweep.state import is_finished

    out = tmp_path / "sweep"
    cli = [sys.executable, "-m", "cli.main", "sweep", *TINY_CLI, "--steps", "120",
           "--eval-every", "10", "--grid", "seed=0,1,2", "--workers", "2", "--threads", "1",
           "--quiet", "--json", "--out", str(out)]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    names = [f"seed-{s}" for s in range(3)]
    deadline = time.monotonic() + 600
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        done = [n for n in names if is_finished(out / n, 120)]
        partial = [n for n in names if n not in done and
                   any(s > 0 for s in list_checkpoints(out / n))]
        if done and partial:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.1)
    proc.wait(60)
    assert killed, "the sweep finished before it could be killed mid-way"
    before = {n: is_finished(out / n, 120) for n in names}

    status = subprocess.run([sys.executable, "-m", "cli.main", "sweep", "--status", str(out),
                             "--json"], capture_output=True, text=True, timeout=300)
    st = json.loads(status.stdout)
    assert st["coordinator_running"] is False
    states = {r["name"]: r["state"] for r in st["runs"]}
    assert {n for n, s in states.items() if s == "done"} == {n for n in names if before[n]}
    assert "interrupted" in states.values()

    again = subprocess.run(cli, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    for r in doc["runs"]:
        name = Path(r["run_dir"]).name
        assert r["state"] == ("skipped" if before[name] else "done")
        rows = read_metrics(r["run_dir"])
        steps = [row["step"] for row in rows]
        assert steps == sorted(set(steps)) and steps[-1] == 120  # each evaluation once
        assert r["final_loss"] == rows[-1]["eval_loss"]
    resumed = next(r for r in doc["runs"] if r["state"] == "done")
    assert resumed["attempts"] == 2
    # the run's own config (the CLI's defaults for what TINY_CLI leaves out), trained in one go
    direct = _direct_metrics(read_run_config(resumed["run_dir"])["train"])
    assert _strip(read_metrics(resumed["run_dir"])) == _strip(direct)


def _worker_pids() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"induction_toolkit.sweep.local" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def test_killed_worker_fails_its_run_only_and_is_retried(tmp_path):
    from induction_toolkit.sweep import run_sweep

    out = tmp_path / "sweep"
    killed: list[int] = []

    def kill_one(views):
        # both runs mid-way: whichever worker dies, its run is unfinished (killing a worker whose
        # run had already finished made the retry a skip: a race on a fast machine)
        if not killed and len(views) == 2 and all(
                v.state == "running" and 20 <= (v.step or 0) <= LONGER["steps"] // 2 for v in views):
            pids = _worker_pids()
            if len(pids) == 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    first = run_sweep(LONGER, {"seed": [0, 1]}, out, workers=2, threads=1, on_update=kill_one)
    assert killed
    states = sorted((r.state, r.error or "") for r in first.runs)
    assert states[0][0] == "done" and states[1][0] == "failed"
    assert "killed by signal 9" in states[1][1]
    second = run_sweep(LONGER, {"seed": [0, 1]}, out, workers=2, threads=1)
    assert sorted(r.state for r in second.runs) == ["done", "skipped"]
    retried = next(r for r in second.runs if r.state == "done")
    assert retried.attempts == 2
    assert retried.final_loss == _direct_metrics({**LONGER, **retried.params})[-1]["eval_loss"]


@pytest.fixture(scope="module")
def local_tiny(tmp_path_factory):
    """Two seeds of TINY on the local backend (2 workers, 1 thread each)."""
    from induction_toolkit.sweep import run_sweep

    return run_sweep(TINY, {"seed": [0, 1]}, tmp_path_factory.mktemp("local") / "s", workers=2,
                     threads=1)


KEYS = ("params", "state", "final_loss", "max_prefix_matching", "induction_layer", "onset_step")


def test_ray_and_local_backends_give_identical_numbers(local_tiny, tmp_path):
    pytest.importorskip("ray")
    from induction_toolkit.run_dir import read_metrics
    from induction_toolkit.sweep import run_sweep

    ray = run_sweep(TINY, {"seed": [0, 1]}, tmp_path / "ray", backend="ray", workers=2, threads=1)
    assert ray.backend == "ray" and local_tiny.backend == "local"
    assert all(r.state == "done" for r in ray.runs)
    assert [{k: r[k] for k in KEYS} for r in ray.to_dict()["runs"]] == \
        [{k: r[k] for k in KEYS} for r in local_tiny.to_dict()["runs"]]
    for a, b in zip(local_tiny.runs, ray.runs):
        assert _strip(read_metrics(a.run_dir)) == _strip(read_metrics(b.run_dir))


def test_grouped_sweep_matches_single_runs_within_tolerance(local_tiny, tmp_path):
    """--group trains both seeds as one grouped model (issue 17): the same runs, not bit for bit
    (a batched matmul sums in another order), and the result says so."""
    from induction_toolkit.run_dir import read_metrics
    from induction_toolkit.sweep import run_sweep

    grouped = run_sweep(TINY, {"seed": [0, 1]}, tmp_path / "grouped", workers=2, threads=1,
                        group=True)
    assert any("not bit for bit" in n for n in grouped.notes)
    assert [r.state for r in grouped.runs] == ["done", "done"]
    for a, b in zip(local_tiny.runs, grouped.runs):
        ra, rb = read_metrics(a.run_dir), read_metrics(b.run_dir)
        assert [r["step"] for r in ra] == [r["step"] for r in rb]
        assert np.allclose([r["eval_loss"] for r in ra], [r["eval_loss"] for r in rb],
                           rtol=0, atol=1e-4)
        assert np.allclose([r["prefix_matching"] for r in ra], [r["prefix_matching"] for r in rb],
                           rtol=0, atol=1e-3)
        assert b.onset_step == a.onset_step and b.induction_layer == a.induction_layer


def test_summary_on_a_run_where_an_induction_head_forms(trained_2l):
    """The sweep's per-run numbers on the shared trained model: layer 1 holds the induction
    head, the onset is dynamics' own, the peak score is the brute-force maximum."""
    from induction_toolkit.dynamics import run_dynamics
    from induction_toolkit.run_dir import read_metrics
    from induction_toolkit.sweep import summarize_run

    s = summarize_run(trained_2l.run_dir)
    rows = read_metrics(trained_2l.run_dir)
    assert s["induction_layer"] == trained_2l.induction_head[0] == 1
    assert s["onset_step"] is not None
    assert s["onset_step"] == run_dynamics(trained_2l.run_dir).induction_onset_step
    assert s["max_prefix_matching"] == max(np.max(r["prefix_matching"]) for r in rows) >= 0.5
    assert s["final_loss"] == rows[-1]["eval_loss"]
