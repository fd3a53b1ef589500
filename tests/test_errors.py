"""One exception family (errors.py) and one handler at the CLI's top: a user-facing failure is one
``error:`` line on stderr and an exit code, through CliRunner and the installed ``induct`` alike."""

import ast
import errno
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit import errors, run_dir

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_error_line(result, code, contains=""):
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert contains in lines[0]
    assert "Traceback" not in result.output
    return lines[0]


# --- one family ---------------------------------------------------------------------------------

def test_every_user_facing_error_class_is_defined_in_errors_py():
    defined_elsewhere = []
    for path in sorted([*(ROOT / "induction_toolkit").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]):
        if path == ROOT / "induction_toolkit" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # an error class (named ...Error) derived from an exception, outside the family
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and any(
                    (isinstance(b, ast.Name) and b.id.endswith("Error"))
                    or (isinstance(b, ast.Attribute) and b.attr.endswith("Error"))
                    for b in node.bases):
                defined_elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not defined_elsewhere


def test_old_import_places_name_the_same_classes():
    from induction_toolkit import batching, pretrained
    from induction_toolkit.causal import HeadSpecError
    from induction_toolkit.training import NonFiniteLossError

    assert batching.OutOfMemoryError is errors.OutOfMemoryError
    assert pretrained.ModelUnavailableError is errors.ModelUnavailableError
    assert HeadSpecError is errors.HeadSpecError
    assert NonFiniteLossError is errors.NonFiniteLossError
    for cls in (errors.ConfigError, errors.RunDirError, errors.CheckpointError,
                errors.ModelUnavailableError, errors.HeadSpecError, errors.OutOfMemoryError):
        assert issubclass(cls, errors.InductionToolkitError) and cls.exit_code == 2
    assert errors.NonFiniteLossError.exit_code == 3


def test_no_command_carries_its_own_error_decorator():
    hits = [p.name for p in (ROOT / "cli").glob("*.py") if "handle_errors" in p.read_text()]
    assert hits == []


# --- the handler: CliRunner ---------------------------------------------------------------------

def test_train_into_a_path_under_a_regular_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    r = invoke("train", "--preset", "attn-only-1l", "--steps", 2, "--out", tmp_path / "file" / "run",
               "--quiet", "--device", "cpu")
    _one_error_line(r, 2, "file")


def test_an_os_error_raised_while_training_is_one_line_exit_2(tmp_path, monkeypatch):
    # the up-front --out checks pass; the write itself fails, as on a full disk
    from induction_toolkit.training import loop

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(loop, "create_run_dir", no_space)
    r = invoke("train", "--preset", "attn-only-1l", "--steps", 2, "--out", tmp_path / "run",
               "--quiet", "--device", "cpu")
    _one_error_line(r, 2, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def planted_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("planted") / "planted.safetensors"
    assert invoke("planted", out).exit_code == 0
    return out


def test_weights_out_under_a_regular_file_is_one_line_exit_2(tmp_path, planted_file):
    (tmp_path / "file").write_text("x")
    r = invoke("weights", planted_file, "--out", tmp_path / "file" / "views",
               "--max-tokens", 16, "--max-positions", 16, "--baseline-samples", 4)
    _one_error_line(r, 2, str(tmp_path / "file"))


def test_planted_into_a_path_under_a_regular_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    _one_error_line(invoke("planted", tmp_path / "file" / "p.safetensors"), 2)


def test_divergence_exits_3(tmp_path, monkeypatch):
    from induction_toolkit.training import LOSS_FNS

    def nan_loss(model, tokens):
        return model(tokens, return_type="loss") * float("nan")

    monkeypatch.setitem(LOSS_FNS, "fast", nan_loss)
    r = invoke("train", "--preset", "attn-only-1l", "--steps", 3, "--out", tmp_path / "run",
               "--quiet", "--device", "cpu", "--batch-size", 2)
    _one_error_line(r, 3, "non-finite at step 1")


def test_interrupt_is_error_interrupted_exit_130(monkeypatch, planted_file):
    from induction_toolkit import checkpoints

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "load_model", interrupted)
    _one_error_line(invoke("score", planted_file), 130, "error: interrupted")


def test_a_bug_keeps_its_traceback(monkeypatch, planted_file):
    from induction_toolkit import checkpoints

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(checkpoints, "load_model", bug)
    r = invoke("score", planted_file)
    assert r.exit_code == 1 and isinstance(r.exception, ZeroDivisionError)


# --- the handler: the installed entry point -----------------------------------------------------

def test_installed_induct_prints_one_line_and_exit_2(tmp_path):
    induct = shutil.which("induct", path=str(Path(sys.executable).parent)) or shutil.which("induct")
    if induct is None:
        pytest.skip("the induct entry point is not installed")
    (tmp_path / "file").write_text("x")
    out = subprocess.run([induct, "train", "--preset", "attn-only-1l", "--steps", "2", "--out",
                          str(tmp_path / "file" / "run"), "--device", "cpu"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and out.stdout == ""


# --- a full disk mid-run ------------------------------------------------------------------------

def _fail_fsync_from(monkeypatch, n_ok: int):
    """Every regular-file fsync after the first ``n_ok`` raises ENOSPC (the disk is full)."""
    from induction_toolkit import atomic

    real = os.fsync
    count = [0]

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            count[0] += 1
            if count[0] > n_ok:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)


def test_a_full_disk_mid_run_leaves_earlier_checkpoints_and_metrics_intact(tmp_path, monkeypatch):
    from induction_toolkit.checkpoints import load_model
    from induction_toolkit.training import TrainConfig, train

    cfg = TrainConfig(preset="attn-only-1l", steps=8, eval_every=4, batch_size=4,
                      checkpoint_every=4, log_checkpoints=0, device="cpu", seed=1)
    out = tmp_path / "run"
    # files written in order: config, metrics@0, ckpt 0, state 0, metrics@4, ckpt 4, state 4,
    # metrics@8 ← the disk fills here
    _fail_fsync_from(monkeypatch, 7)
    with torch.random.fork_rng(devices=[]), pytest.raises(OSError) as err:
        train(cfg, out, handle_signals=False)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert [r["step"] for r in run_dir.read_metrics(out)] == [0, 4]
    assert run_dir.read_metrics(out).notes == []
    assert list(run_dir.list_checkpoints(out)) == [0, 4]
    assert load_model(out, step=4).step == 4
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no half-written files
    # with space again, the run resumes from its last checkpoint and finishes
    with torch.random.fork_rng(devices=[]):
        result = train(None, out, resume=True, handle_signals=False)
    assert result.resumed_from == 4 and [r["step"] for r in result.metrics] == [0, 4, 8]


def test_a_full_disk_during_cli_training_is_one_line_and_keeps_the_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _fail_fsync_from(monkeypatch, 4)  # config, metrics@0, ckpt 0, state 0; then metrics@4 fails
    r = invoke("train", "--preset", "attn-only-1l", "--steps", 8, "--eval-every", 4,
               "--checkpoint-every", 4, "--log-checkpoints", 0, "--batch-size", 4, "--out", out,
               "--quiet", "--device", "cpu")
    monkeypatch.undo()
    _one_error_line(r, 2, os.strerror(errno.ENOSPC))
    assert [row["step"] for row in run_dir.read_metrics(out)] == [0]
    assert list(run_dir.list_checkpoints(out)) == [0]


@pytest.mark.slow
def test_ctrl_c_during_cli_training_saves_a_resumable_checkpoint_and_exits_130(tmp_path):
    import signal
    import time

    from induction_toolkit.training.state import load_state

    induct = shutil.which("induct", path=str(Path(sys.executable).parent)) or shutil.which("induct")
    if induct is None:
        pytest.skip("the induct entry point is not installed")
    out = tmp_path / "run"
    proc = subprocess.Popen([induct, "train", "--preset", "attn-only-1l", "--steps", "100000",
                             "--eval-every", "100000", "--checkpoint-every", "100000",
                             "--log-checkpoints", "0", "--batch-size", "2", "--out", str(out),
                             "--quiet", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not run_dir.list_checkpoints(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)  # some steps past checkpoint 0
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    steps = list(run_dir.list_checkpoints(out))
    assert stderr.strip().splitlines() == [f"error: interrupted: checkpoint at step {steps[-1]} "
                                           f"saved; continue with induct train --resume {out}"]
    assert len(steps) == 2 and steps[0] == 0 and 0 < steps[1] < 100000
    assert load_state(out).train.step == steps[1]  # the state matches the interrupt checkpoint
