"""Training runs: the trained model shows the circuit at the phase change; resume is bit-identical;
checkpoints are dense early; the tasks are what they say; bad input is one line."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.dynamics import analyse, phase_change_window
from induction_toolkit.errors import ConfigError
from induction_toolkit.scores import scoring_task
from induction_toolkit.tasks import CopyingConfig, RepeatedTaskConfig, TextConfig, make_task
from induction_toolkit.tasks.repeated import repeated_tokens
from induction_toolkit.training import (LOSS_FNS, NonFiniteLossError, TrainConfig,
                                        checkpoint_steps, read_metrics, train)

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# --- the science on the shared trained model ---------------------------------------------------

def test_trained_2l_forms_previous_token_then_induction_circuit(trained_2l):
    s = trained_2l.scores
    layer, head = trained_2l.induction_head
    assert layer == 1 and float(s.prefix_matching[layer, head]) > 0.9
    # layer 0 has no earlier layer to compose with, so it cannot match prefixes
    assert float(s.prefix_matching[0].max()) < 0.3
    # The previous-token head attends to the previous token where the induction head reads its
    # keys: the training data's first copy sits in positions 1..R (R ≤ 31), so early in the
    # context. Its whole-sequence mean is diluted by the rest of the context (measured 0.41), so
    # read the position profile, straight from the attention pattern.
    layer0, head0 = trained_2l.previous_token_head
    assert layer0 == 0
    task, _ = scoring_task(trained_2l.model, bos_token_id=0, exclude=(0,))
    tokens = repeated_tokens(task, 16, seed=7)
    _, cache = trained_2l.model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"][:, head0]
    quarter = tokens.shape[1] // 4
    early = np.mean([float(pattern[:, i, i - 1].mean()) for i in range(1, quarter + 1)])
    assert early > 0.7
    # the untrained model (step 0 of the same run) has neither head
    first = read_metrics(trained_2l.run_dir)[0]
    assert first["step"] == 0
    assert max(first["prefix_matching"][1]) < 0.2 and max(first["previous_token"][0]) < 0.2


def test_phase_change_falls_inside_the_induction_heads_rise(trained_2l):
    """Olsson: induction heads form in the phase change. The phase change is located on held-out
    samples of the training distribution (not the scoring sequences), so this can fail."""
    rows = read_metrics(trained_2l.run_dir)
    dyn = analyse(rows, task="repeated")
    assert dyn.strongest_head[0] == 1 and dyn.induction_onset_step is not None
    assert "held-out" in dyn.icl_score_source and dyn.to_dict()["eval_spacing"]["max_steps"] <= 10
    fit = dyn.lag.score_fit
    # the steepest ICL drop lies within the central 12–88% of the head's logistic rise
    assert fit.centre - 2 * fit.width <= dyn.phase_peak <= fit.centre + 2 * fit.width
    # the in-context loss falls with it: both onsets have an interval, and the blog-form relation
    # beats every head that never becomes an induction head
    assert dyn.lag.ci95 is not None and dyn.lag.ci95[1] - dyn.lag.ci95[0] < 100
    assert dyn.lag.r2 > 0.9 and (dyn.lag.null_r2 is None or dyn.lag.null_r2 < 0.5)
    # the repeated half is learned in context: its loss falls far below the first half's
    last = rows[-1]
    assert last["loss_repeated_half"] < 0.5 * last["loss_first_half"]


# --- dynamics on closed-form curves -------------------------------------------------------------

def _sigmoid(t, centre, width):
    return 1 / (1 + np.exp(-(t - centre) / width))


def test_phase_change_window_brackets_the_steepest_drop_of_a_sigmoid():
    steps = np.arange(0, 2001, 20, dtype=float)
    icl = -2 * _sigmoid(steps, 800, 60)
    start, end, peak = phase_change_window(steps, icl, sigma=0)
    assert abs(peak - 800) <= 20
    # half-minimum width of a logistic derivative: centre ± width·ln(3 + 2√2) ≈ ± 1.76·width
    half = 60 * np.log(3 + 2 * np.sqrt(2))
    assert abs(start - (800 - half)) <= 20 and abs(end - (800 + half)) <= 20


# --- schedule and tasks -----------------------------------------------------------------------

def test_checkpoint_schedule_is_log_spaced_plus_linear():
    # geomspace(1, 100, 5) = 1, 3.16, 10, 31.6, 100
    assert checkpoint_steps(100, every=25, n_log=5) == [0, 1, 3, 10, 25, 32, 50, 75, 100]
    dense = checkpoint_steps(20_000, n_log=30)
    assert sum(s <= 200 for s in dense) >= 12 and sum(s > 10_000 for s in dense) <= 8


def _period(row: torch.Tensor) -> int:
    for r in range(1, len(row)):
        if torch.equal(row[r:], row[:-r]):
            return r
    return len(row)


def _repeated_suffix(row: torch.Tensor) -> tuple[int, int]:
    """(start, period) of the longest suffix that is at least two copies of a ≤ 31-token segment."""
    for start in range(len(row)):
        p = _period(row[start:])
        if p <= 31 and len(row) - start >= 2 * p:
            return start, p
    return len(row), 0


def test_repeated_task_is_one_distribution_varying_the_segment():
    task = RepeatedTaskConfig(d_vocab=64, seq_len=64, min_segment=4, max_segment=31)
    g = torch.Generator().manual_seed(0)
    periods = set()
    for step in (0, 100, 399, 400, 5000):  # 400: where a curriculum used to switch on offsets
        for _ in range(10):
            x = task.sample(8, g, step=step)
            assert x.shape == (8, 64) and (x[:, 0] == 0).all() and (x[:, 1:] != 0).all()
            for row in x[:, 1:]:
                start, p = _repeated_suffix(row)
                assert start == 0  # no offsets by default, at any step
                assert len(set(row[:p].tolist())) == p  # distinct within a segment
                periods.add(p)
    assert len(periods) > 10
    # offsets, when asked for, are there from step 0: about half the batches, reaching the
    # second half of the context
    offset = RepeatedTaskConfig(offset_fraction=0.5)
    starts = [_repeated_suffix(row)[0] for _ in range(20)
              for row in offset.sample(8, g, step=0)[:, 1:]]
    assert 0.2 < np.mean([s > 0 for s in starts]) < 0.8 and max(starts) > 32


def test_copying_task_is_content_separator_content():
    task = CopyingConfig(d_vocab=64, seq_len=64)
    x, split = task.eval_batch(4, seed=0)
    L = task.max_length
    assert x.shape == (4, 64) and split == 1 + L + 1
    assert (x[:, 0] == task.bos_token_id).all() and (x[:, 1 + L] == task.separator_token_id).all()
    assert torch.equal(x[:, 1:1 + L], x[:, split:split + L])
    assert not set(x[:, 1:1 + L].flatten().tolist()) & {task.bos_token_id, task.separator_token_id}


def test_text_task_is_offline_stdlib_bytes_and_seeded():
    task = TextConfig(seq_len=32, max_bytes=200_000)
    a = task.sample(4, torch.Generator().manual_seed(1))
    b = task.sample(4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (4, 32) and 0 <= int(a.min()) and int(a.max()) < 256
    text = bytes(a[0].tolist()).decode("utf-8", errors="replace")
    import sysconfig
    corpus = b"".join(p.read_bytes() for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")))
    assert bytes(a[0].tolist()) in corpus or len(text) == 32  # a real slice of Python source


def test_unknown_task_and_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown task"):
        make_task("poetry")
    with pytest.raises(ConfigError, match="no option"):
        make_task("repeated", colour=3)
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)


# --- the loop ---------------------------------------------------------------------------------

@pytest.mark.parametrize("loss_fn", ["hooked", "fast"])
def test_training_step_attaches_no_hooks(monkeypatch, tmp_path, loss_fn):
    seen = []
    original = LOSS_FNS[loss_fn]

    def spy(model, tokens):
        seen.append(sum(len(hp._forward_hooks) for hp in model.hook_dict.values()))
        return original(model, tokens)

    monkeypatch.setitem(LOSS_FNS, loss_fn, spy)
    train(TrainConfig(preset="attn-only-1l", steps=6, eval_every=3, batch_size=4, device="cpu",
                      loss_fn=loss_fn), None, handle_signals=False)
    assert seen == [0] * 6


def test_non_finite_loss_stops_with_last_good_checkpoint(monkeypatch, tmp_path):
    default = TrainConfig().loss_fn
    original = LOSS_FNS[default]
    calls = []

    def blows_up(model, tokens):
        calls.append(1)
        loss = original(model, tokens)
        return loss * float("nan") if len(calls) == 7 else loss

    monkeypatch.setitem(LOSS_FNS, default, blows_up)
    cfg = TrainConfig(preset="attn-only-1l", steps=20, eval_every=5, batch_size=4,
                      checkpoint_every=5, log_checkpoints=0, device="cpu")
    with pytest.raises(NonFiniteLossError,
                       match=r"^loss became non-finite at step 7; last good checkpoint: step 5$") as e:
        train(cfg, tmp_path / "run", handle_signals=False)
    assert e.value.exit_code == 3
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_0000000.safetensors", "step_0000005.safetensors"]


_TRAIN_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from induction_toolkit.training import TrainConfig, train
    cfg = TrainConfig(preset="attn-only-1l", steps=40, eval_every=10, batch_size=8, dropout=0.1,
                      checkpoint_every=5, log_checkpoints=0, device="cpu", seed=3)
    slow = sys.argv[2] == "slow"
    train(None if sys.argv[3] == "resume" else cfg, sys.argv[1], resume=sys.argv[3] == "resume",
          progress=(lambda p: time.sleep(0.15)) if slow else None)
""")


def _run_script(tmp_path, *args, wait=True):
    script = tmp_path / "train_script.py"
    script.write_text(_TRAIN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(script), *map(str, args)]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _strip_timing(rows):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def test_sigkill_then_resume_gives_bit_identical_weights(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = _run_script(tmp_path, whole, "fast", "new")
    assert done.returncode == 0, done.stderr
    proc = _run_script(tmp_path, killed, "slow", "new", wait=False)
    target = killed / "checkpoints" / "step_0000015.safetensors"
    deadline = time.time() + 240
    while not target.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "checkpoints" / "step_0000040.safetensors").exists()  # it really died
    resumed = _run_script(tmp_path, killed, "fast", "resume")
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(whole / "checkpoints" / "step_0000040.safetensors")
    b = load_file(killed / "checkpoints" / "step_0000040.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _strip_timing(read_metrics(whole)) == _strip_timing(read_metrics(killed))


# --- the command line -------------------------------------------------------------------------

def test_cli_train_score_dynamics_end_to_end(tmp_path):
    run = tmp_path / "run"
    r = invoke("train", "--preset", "attn-only-1l", "--steps", 30, "--eval-every", 10,
               "--out", run, "--quiet", "--device", "cpu")
    assert r.exit_code == 0, r.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["lr"] == 3e-3 and cfg["train"]["device"] == "cpu"
    assert cfg["task"]["name"] == "repeated"
    r = invoke("score", run, "--json", "--step", 10)
    assert r.exit_code == 0, r.output
    scored = json.loads(r.stdout)
    assert scored["model"]["step"] == 10 and scored["data"]["bos_token_id"] == 0
    r = invoke("dynamics", run, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d) >= {"phase_change", "induction_onset_step", "loss_drop_step", "lag", "heads"}
    assert set(d["phase_change"]) >= {"start_step", "end_step"}
    assert set(d["lag"]) >= {"steps", "ci95", "r2", "r2_score_fit", "r2_loss_fit", "null_r2",
                             "method"}
    assert d["n_evals"] == 4 and "held-out" in d["icl_score_source"]
    assert len(d["heads"]) == 4 and all((run / "figures" / f).is_file()
                                        for f in ("loss.png", "prefix_matching.png", "icl_score.png",
                                                  "lag.png"))
    rows = read_metrics(run)
    assert all("score_icl" not in r and "icl_windows" in r for r in rows)


@pytest.mark.parametrize("args, message", [
    (["train", "--preset", "nope", "--out", "{tmp}/r"], "unknown preset"),
    (["train", "--task", "nope", "--out", "{tmp}/r"], "unknown task"),
    (["train", "--steps", "0", "--out", "{tmp}/r"], "steps"),
    (["train", "--out", "{tmp}/file.txt"], "existing file"),
    (["train", "--resume", "{tmp}"], "not a training run"),
    (["dynamics", "{tmp}"], "not a training run"),
    (["reproduce", "nope"], "unknown experiment"),
    (["train", "--embed-init-std", "0", "--out", "{tmp}/r"], "embed-init-std"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    r = invoke(*[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_embed_init_std_is_applied_and_saved_with_the_run(tmp_path):
    run = tmp_path / "run"
    r = invoke("train", "--preset", "attn-only-1l", "--steps", 1, "--embed-init-std", 2.0,
               "--out", run, "--quiet", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert json.loads((run / "config.json").read_text())["train"]["embed_init_std"] == 2.0
    w_e = load_file(str(run / "checkpoints" / "step_0000000.safetensors"))["embed.W_E"]
    assert abs(float(w_e.std()) - 2.0) < 0.2  # TransformerLens' own init would give 0.1


def test_out_naming_a_run_with_another_config_is_refused(tmp_path):
    run = tmp_path / "run"
    assert invoke("train", "--preset", "attn-only-1l", "--steps", 2, "--out", run, "--quiet",
                  "--device", "cpu").exit_code == 0
    r = invoke("train", "--preset", "attn-only-1l", "--steps", 2, "--lr", 0.01, "--out", run,
               "--quiet", "--device", "cpu")
    assert r.exit_code == 2 and "another config" in r.output and "lr" in r.output
