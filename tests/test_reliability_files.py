"""The file system says no (issue 19): a full disk, a read-only or impossible ``--out``.

Each is one ``error: …`` line and exit 2, and what was written before stays whole and loadable.
A real full disk and a real read-only file system are small tmpfs mounts where the machine lets
this process mount (root with CAP_SYS_ADMIN; the tests say so when they skip). Where it cannot,
tests/test_errors.py still covers a full disk with a monkeypatched write that raises ENOSPC.
"""

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit import run_dir as rd

runner = CliRunner()


def _mount_tmpfs(where: Path, size: str, read_only: bool = False) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    opts = f"size={size}" + (",ro" if read_only else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                          capture_output=True, check=False).returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    """``make(size, read_only=False)`` mounts a tmpfs under tmp_path; unmounted afterwards."""
    mounted = []

    def make(size: str, read_only: bool = False, name: str = "fs") -> Path:
        where = tmp_path / name
        if not _mount_tmpfs(where, size, read_only):
            pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); the "
                        "monkeypatched ENOSPC tests in test_errors.py still run")
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def _one_error_line(result, code=2) -> str:
    assert "Traceback" not in result.output
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- a real full disk ---------------------------------------------------------------------------

TRAIN = ["train", "--preset", "attn-only-1l", "--steps", "12", "--eval-every", "2",
         "--checkpoint-every", "4", "--log-checkpoints", "0", "--batch-size", "2", "--quiet",
         "--device", "cpu"]


def test_a_full_disk_mid_run_is_one_line_and_keeps_every_earlier_file(tmpfs, tmp_path):
    from induction_toolkit.checkpoints import load_model
    from induction_toolkit.training.state import load_state

    # 700 kB: config, metrics and checkpoint 0 (120 kB) and its state (260 kB) fit, and so does
    # checkpoint 4; rewriting the state beside the old one (atomic: both exist for a moment) does not
    disk = tmpfs("700k")
    run = disk / "run"
    with torch.random.fork_rng(devices=[]):
        result = runner.invoke(app, [*TRAIN, "--out", str(run)])
    line = _one_error_line(result)
    assert os.strerror(errno.ENOSPC) in line
    kept = list(rd.list_checkpoints(run))
    assert kept[0] == 0 and len(kept) >= 1
    for step in kept:
        assert load_model(run, step=step).step == step
    rows = rd.read_metrics(run)
    assert rows.notes == [] and [r["step"] for r in rows] == list(range(0, rows[-1]["step"] + 1, 2))
    resume_from = load_state(run).train.step
    assert resume_from in kept
    assert not list(run.rglob("*.tmp")), "a failed write leaves no temp file"
    # with room again the run resumes from its last complete state and finishes
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    with torch.random.fork_rng(devices=[]):
        result = runner.invoke(app, ["train", "--resume", str(moved), "--quiet"])
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in rd.read_metrics(moved)] == list(range(0, 13, 2))


# --- outputs that cannot be written -------------------------------------------------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A finished 4-step attn-only-1l run and its last checkpoint."""
    from induction_toolkit.training import TrainConfig, train

    run = tmp_path_factory.mktemp("good") / "run"
    cfg = TrainConfig(preset="attn-only-1l", steps=4, eval_every=1, batch_size=2,
                      log_checkpoints=0, checkpoint_every=2, device="cpu", eval_batch=4,
                      score_batch=4)
    with torch.random.fork_rng(devices=[]):
        train(cfg, run, handle_signals=False)
    return {"run": run, "ckpt": rd.run_checkpoint(run)}


SMALL = ("--batch", "2", "--seq-len", "5", "--device", "cpu")
SLOW = pytest.mark.slow  # they compute everything before they write: seconds each
# Every command that writes a file, with {out} where its output goes (one row per command).
WRITERS = [
    pytest.param(("train", "--preset", "attn-only-1l", "--steps", "2", "--batch-size", "2",
                  "--out", "{out}/run", "--quiet", "--device", "cpu"), id="train"),
    pytest.param(("planted", "{out}/planted.safetensors"), id="planted"),
    pytest.param(("reproduce", "blog", "--quick", "--seeds", "0", "--inits", "unit", "--device",
                  "cpu", "--out", "{out}/blog"), id="reproduce"),
    pytest.param(("weights", "{ckpt}", "--out", "{out}/views", "--max-tokens", "8",
                  "--max-positions", "8", "--baseline-samples", "2"), id="weights", marks=SLOW),
    pytest.param(("report", "{ckpt}", "--out", "{out}/report.html", *SMALL), id="report",
                 marks=SLOW),
    pytest.param(("compare", "{ckpt}", "--out", "{out}/compare.png", *SMALL), id="compare",
                 marks=SLOW),
]


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("argv", WRITERS)
def test_out_under_a_regular_file_is_one_line_and_writes_nothing(argv, good, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    before = _tree(tmp_path)
    with torch.random.fork_rng(devices=[]):
        result = runner.invoke(app, [a.format(out=blocker / "sub", ckpt=good["ckpt"])
                                     for a in argv])
    assert str(blocker) in _one_error_line(result)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("argv", WRITERS)
def test_out_on_a_read_only_file_system_is_one_line_and_writes_nothing(argv, good, tmpfs):
    read_only = tmpfs("64k", read_only=True)
    with torch.random.fork_rng(devices=[]):
        result = runner.invoke(app, [a.format(out=read_only, ckpt=good["ckpt"]) for a in argv])
    line = _one_error_line(result)
    assert str(read_only) in line or "not writable" in line or "Read-only" in line, line
    assert _tree(read_only) == {}


@SLOW
def test_dynamics_of_a_run_on_a_read_only_file_system_is_one_line(good, tmpfs):
    disk = tmpfs("2m", name="ro_run")
    shutil.copytree(good["run"], disk / "run")
    before = _tree(disk)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = runner.invoke(app, ["dynamics", str(disk / "run")])
    assert "Read-only" in _one_error_line(result)
    assert _tree(disk) == before
    # the numbers themselves need no writing
    result = runner.invoke(app, ["dynamics", str(disk / "run"), "--no-figures", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["n_evals"] == 5
