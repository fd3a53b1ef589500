"""Training's promises under failure and repetition (issue 19): divergence exits 3 naming the step
and the last good checkpoint; the same seed writes the same bytes on CPU."""

import json
import math
import re

import torch
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit import run_dir as rd

runner = CliRunner()


def test_lr_1e9_diverges_exit_3_naming_the_step_and_the_last_good_checkpoint(tmp_path):
    from induction_toolkit.checkpoints import load_model
    from induction_toolkit.training.state import load_state

    run = tmp_path / "run"
    with torch.random.fork_rng(devices=[]):
        result = runner.invoke(app, ["train", "--preset", "attn-only-1l", "--steps", "20",
                                     "--lr", "1e9", "--batch-size", "4", "--eval-every", "1",
                                     "--checkpoint-every", "1", "--log-checkpoints", "0",
                                     "--out", str(run), "--quiet", "--device", "cpu"])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    m = re.fullmatch(r"error: loss became non-finite at step (\d+)( \(\w+ in the evaluation\))?; "
                     r"last good checkpoint: step (\d+)", lines[0])
    assert m, lines[0]
    bad, good = int(m[1]), int(m[3])
    # one checkpoint per step: the last good one is the step before the loss blew up
    assert 1 <= bad < 20 and good == bad - 1
    assert max(rd.list_checkpoints(run)) == good
    assert load_model(run).step == good and load_state(run).train.step == good
    assert all(torch.isfinite(w).all() for w in load_model(run).model.parameters())
    rows = rd.read_metrics(run)
    assert rows[-1]["step"] == good and rows.notes == []
    assert all(math.isfinite(r["eval_loss"]) for r in rows)


def _train_bytes(run, seed):
    from induction_toolkit.training import TrainConfig, train

    cfg = TrainConfig(preset="attn-only-1l", steps=12, eval_every=3, batch_size=4, dropout=0.1,
                      checkpoint_every=6, log_checkpoints=0, device="cpu", seed=seed,
                      eval_batch=8, score_batch=8)
    with torch.random.fork_rng(devices=[]):
        train(cfg, run, handle_signals=False)
    # elapsed_s is wall-clock time: the one value that differs between identical runs
    metrics = re.sub(rb'"elapsed_s": [0-9.e+-]+', b'"elapsed_s": T', rd.metrics_path(run).read_bytes())
    ckpts = {s: _tensors_and_metadata(p) for s, p in rd.list_checkpoints(run).items()}
    return metrics, ckpts


def _tensors_and_metadata(path):
    # Not the file's bytes: safetensors writes its metadata from a hash map, so the header's key
    # order (only that) varies between processes; docs/training.md says so.
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def _same(a, b) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(
        torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_same_seed_gives_byte_identical_metrics_and_checkpoints_on_cpu(tmp_path):
    first = _train_bytes(tmp_path / "a", seed=5)
    second = _train_bytes(tmp_path / "b", seed=5)
    other = _train_bytes(tmp_path / "c", seed=6)
    assert first[0] == second[0]  # metrics.jsonl, byte for byte (elapsed_s masked)
    assert list(first[1]) == list(second[1]) == [0, 6, 12]
    assert all(_same(first[1][s], second[1][s]) for s in first[1])  # checkpoints: same tensors
    assert first[0] != other[0] and not _same(first[1][12], other[1][12])  # the seed matters
    rows = [json.loads(line.replace(b'"elapsed_s": T', b'"elapsed_s": 0')) for line in first[0].splitlines()]
    assert [r["step"] for r in rows] == [0, 3, 6, 9, 12]
