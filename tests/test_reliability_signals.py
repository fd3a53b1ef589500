"""Training under signals, in real processes (issue 19).

SIGINT and SIGTERM save a resumable checkpoint at the end of the current step and exit 130 / 143
with one line; SIGKILL at random moments (one of them inside a checkpoint write) never leaves a
half-written checkpoint or metrics line where a reader looks; and every resumed run ends with the
weights and metrics of the run that was never stopped, bit for bit.

The processes run the real ``induct`` app (``cli.main``); a small launcher only makes each step
(and, for SIGKILL, each atomic rename) sleep, so a signal lands mid-run. Sleeping changes no
number. Slow: each process start costs ~5 s of imports.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from induction_toolkit import run_dir as rd

pytestmark = pytest.mark.slow

STEPS = 30
TRAIN = ["train", "--preset", "attn-only-1l", "--steps", str(STEPS), "--eval-every", "5",
         "--checkpoint-every", "10", "--log-checkpoints", "0", "--batch-size", "4",
         "--dropout", "0.1", "--seed", "3", "--quiet", "--device", "cpu"]

_LAUNCHER = textwrap.dedent("""
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    from induction_toolkit import atomic
    from induction_toolkit.training import loop
    step_sleep = float(os.environ.get("STEP_SLEEP", "0"))
    write_sleep = float(os.environ.get("WRITE_SLEEP", "0"))
    if step_sleep:
        real_step = loop._Run.step
        def step(self, n):
            time.sleep(step_sleep)
            return real_step(self, n)
        loop._Run.step = step
    if write_sleep:
        real_replace = os.replace
        class SlowOs:
            def __getattr__(self, name):
                return getattr(os, name)
            @staticmethod
            def replace(a, b):
                time.sleep(write_sleep)  # the temp file is complete but not yet renamed
                return real_replace(a, b)
        atomic.os = SlowOs()
    from cli.main import app
    app(sys.argv[1:], prog_name="induct")
""")


def _start(tmp_path: Path, args, step_sleep=0.0, write_sleep=0.0) -> subprocess.Popen:
    launcher = tmp_path / "launch_induct.py"
    launcher.write_text(_LAUNCHER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEP_SLEEP": str(step_sleep),
           "WRITE_SLEEP": str(write_sleep)}
    return subprocess.Popen([sys.executable, str(launcher), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout=300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _wait_for(condition, proc, timeout=240):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def _timeless(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rd.read_metrics(run)]


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(rd.checkpoint_path(a, STEPS)), load_file(rd.checkpoint_path(b, STEPS))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _timeless(a) == _timeless(b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run never stopped."""
    tmp = tmp_path_factory.mktemp("reference")
    rc, err = _finish(_start(tmp, [*TRAIN, "--out", tmp / "run"]))
    assert rc == 0, err
    return tmp / "run"


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_saves_the_current_step_exits_and_resumes_bit_identically(
        sig, code, word, reference, tmp_path):
    run = tmp_path / "run"
    proc = _start(tmp_path, [*TRAIN, "--out", run], step_sleep=0.1)
    _wait_for(lambda: any(r["step"] >= 5 for r in rd.read_metrics(run)), proc)
    proc.send_signal(sig)
    rc, err = _finish(proc)
    assert rc == code, err
    lines = err.strip().splitlines()
    steps = list(rd.list_checkpoints(run))
    stopped = steps[-1]
    assert 5 <= stopped < STEPS and stopped not in (10, 20)  # an unscheduled, end-of-step save
    assert lines == [f"error: {word}: checkpoint at step {stopped} saved; continue with "
                     f"induct train --resume {run}"]
    from induction_toolkit.training.state import load_state

    assert load_state(run).train.step == stopped
    assert not list(run.rglob("*.tmp"))
    rc, err = _finish(_start(tmp_path, ["train", "--resume", run, "--quiet"]))
    assert rc == 0, err
    _assert_same_run(reference, run)


def _check_nothing_half_written(run: Path) -> int | None:
    """Everything a reader looks at is whole; returns the step a resume would continue from."""
    from induction_toolkit.checkpoints import load_model
    from induction_toolkit.training.state import load_state

    metrics = rd.read_metrics(run)
    assert metrics.notes == []  # no torn line, ever
    assert [r["step"] for r in metrics] == sorted({r["step"] for r in metrics})
    for step in rd.list_checkpoints(run):
        assert load_model(run, step=step).step == step  # every visible checkpoint loads whole
    if rd.state_path(run).is_file():
        step = load_state(run).train.step
        assert step in rd.list_checkpoints(run)
        return step
    return None


def test_sigkill_at_random_moments_never_shows_half_a_file_and_resumes_bit_identically(
        reference, tmp_path):
    run = tmp_path / "run"
    rng = random.Random(19)
    during_write = 0
    for kill in range(6):
        args = [*TRAIN, "--out", run] if kill == 0 else ["train", "--resume", run, "--quiet"]
        stale = set(run.glob("checkpoints/.*.tmp"))
        metrics = rd.metrics_path(run)
        written = metrics.stat().st_mtime_ns if metrics.is_file() else None
        proc = _start(tmp_path, args, step_sleep=0.03, write_sleep=0.25)
        if kill % 2 == 1:
            # inside a checkpoint write: its temp file exists, the rename has not happened yet
            _wait_for(lambda: set(run.glob("checkpoints/.*.tmp")) - stale, proc)
            during_write += 1
        else:
            # a random moment once training is under way (metrics.jsonl rewritten by this process)
            _wait_for(lambda: metrics.is_file() and metrics.stat().st_mtime_ns != written, proc)
            time.sleep(rng.uniform(0.0, 1.2))
        if proc.poll() is not None:
            pytest.fail(f"the run ended before kill {kill}: {proc.communicate()[1]}")
        proc.kill()
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        _check_nothing_half_written(run)
    assert during_write == 3
    rc, err = _finish(_start(tmp_path, ["train", "--resume", run, "--quiet"]))
    assert rc == 0, err
    assert _check_nothing_half_written(run) == STEPS
    assert not list(run.rglob("*.tmp")), "a resume clears the temp files a kill left"
    _assert_same_run(reference, run)
