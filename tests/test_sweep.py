"""induct sweep (issue 16): grids, the local backend, resume/skip/retry, --status, bad input.

Runs are tiny (a 1-layer, d_model 32 model, 30 steps): these tests check the machinery (what
ran, where, with which config, skipped or retried) and that a sweep's numbers are those of an
ordinary training run and of ``induct dynamics``, not the science of induction heads (which
tests/test_sweep_slow.py checks on a run where an induction head forms).
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.errors import ConfigError
from induction_toolkit.sweep.grid import expand_grid, parse_grid_options

runner = CliRunner()

# The smallest model and task that still evaluate every head (seq 32, segments ≤ 12).
TINY = dict(preset="attn-only-1l", task="repeated", steps=30, eval_every=5, log_checkpoints=3,
            device="cpu", batch_size=8, model_overrides={"d_model": 32, "n_ctx": 32},
            task_options={"max_segment": 12}, eval_batch=16, score_batch=8)
TINY_CLI = ["--preset", "attn-only-1l", "--steps", "30", "--eval-every", "5", "--device", "cpu",
            "--batch-size", "8", "--model-opt", "d_model=32", "--model-opt", "n_ctx=32",
            "--task-opt", "max_segment=12"]
# lr 1e6 diverges at step 2 (NonFiniteLossError): a failing point in the same grid.
GRID = {"seed": [1], "lr": [3e-3, 1e6]}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# --- grids ------------------------------------------------------------------------------------

def test_parse_grid_options_types_and_order():
    grid = parse_grid_options(["seed=0,1,2", "dropout=0,0.1", "preset=attn-only-1l,attn-only-2l",
                               "model.d_model=32,64", "weight-decay=0.0,0.1"])
    assert grid == {"seed": [0, 1, 2], "dropout": [0, 0.1],
                    "preset": ["attn-only-1l", "attn-only-2l"], "model.d_model": [32, 64],
                    "weight_decay": [0.0, 0.1]}


@pytest.mark.parametrize("items, message", [
    (["colour=1,2"], "unknown parameter 'colour'"),
    (["seed="], "empty list"),
    (["seed=0,,1"], "empty value"),
    (["seed=0.5"], "is not int"),
    (["lr=fast"], "is not float"),
    (["dropout=true"], "is not float"),
    (["seed=1,1"], "repeated value"),
    (["seed=1", "seed=2"], "given twice"),
    (["seed"], "must look like"),
])
def test_bad_grid_is_one_config_error(items, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid_options(items)


def test_expand_grid_product_names_and_configs():
    points = expand_grid(TINY, {"seed": [0, 1], "dropout": [0.0, 0.1], "task.max_segment": [10]})
    assert [p.name for p in points] == [
        "seed-0_dropout-0.0_task.max_segment-10", "seed-0_dropout-0.1_task.max_segment-10",
        "seed-1_dropout-0.0_task.max_segment-10", "seed-1_dropout-0.1_task.max_segment-10"]
    last = points[-1].config
    assert (last.seed, last.dropout, last.task_options, last.model_overrides) == \
        (1, 0.1, {"max_segment": 10}, {"d_model": 32, "n_ctx": 32})
    assert last.lr == TINY.get("lr", 3e-3) and points[0].config.seed == 0


def test_group_partition_keeps_shapes_together(tmp_path):
    from induction_toolkit.sweep.grouped import partition

    points = expand_grid(TINY, {"batch_size": [4, 8], "seed": [0, 1], "lr": [1e-3, 3e-3]})
    groups = partition(points, tmp_path)
    assert [[p.name for p in g] for g in groups] == [
        [p.name for p in points if p.params["batch_size"] == b] for b in (4, 8)]


# --- bad input on the command line: one line, exit 2, nothing started ---------------------------

@pytest.mark.parametrize("extra, message", [
    (["--grid", "colour=1,2"], "unknown parameter"),
    (["--grid", "seed="], "empty list"),
    (["--grid", "seed=a,b"], "is not int"),
    (["--grid", "model.colour=1,2"], "has no field 'colour'"),
    (["--grid", "seed=0", "--backend", "spark"], "unknown backend"),
    (["--grid", "seed=0", "--backend", "ray", "--address", "127.0.0.1:9"], "cannot reach"),
    (["--grid", "seed=0", "--backend", "ray", "--address", "nonsense"], "HOST:PORT"),
    (["--grid", "seed=0", "--workers", "0"], "--workers must be"),
])
def test_bad_sweep_input_exits_2_before_starting(tmp_path, extra, message):
    out = tmp_path / "sweep"
    result = invoke("sweep", *TINY_CLI, "--out", out, *extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not out.exists()


def test_ray_not_installed_exits_2(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    out = tmp_path / "sweep"
    result = invoke("sweep", *TINY_CLI, "--out", out, "--grid", "seed=0", "--backend", "ray")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the ray backend needs Ray: pip install")
    assert not out.exists()


def test_status_of_a_directory_that_is_not_a_sweep(tmp_path):
    result = invoke("sweep", "--status", tmp_path)
    assert result.exit_code == 2 and "is not a sweep directory" in result.stderr


def test_cli_imports_neither_wandb_nor_ray():
    code = ("import sys, cli.main; "
            "print(json.dumps([m in sys.modules for m in ('wandb', 'ray', 'torch')]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == [False, False, False]


# --- a real sweep on the local backend -----------------------------------------------------------

@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """GRID on the local backend (2 workers, 1 thread each), then the same call again."""
    from induction_toolkit.sweep import run_sweep

    out = tmp_path_factory.mktemp("sweep") / "grid"
    views = []
    first = run_sweep(TINY, GRID, out, workers=2, threads=1, on_update=views.append)
    mtimes = {r.name: sorted(p.stat().st_mtime_ns for p in (out / r.name).rglob("*.safetensors"))
              for r in first.runs}
    second = run_sweep(TINY, GRID, out, workers=2, threads=1)
    return out, first, second, mtimes, views


def test_sweep_runs_every_point_and_reports_divergence(local_sweep):
    out, first, _, _, views = local_sweep
    assert [r.params for r in first.runs] == [{"seed": 1, "lr": 3e-3}, {"seed": 1, "lr": 1e6}]
    states = {r.name: r.state for r in first.runs}
    assert states == {"seed-1_lr-0.003": "done", "seed-1_lr-1000000.0": "failed"}
    failed = first.runs[1]
    assert "non-finite at step 2" in failed.error
    assert failed.final_loss is None and failed.max_prefix_matching is None
    assert failed.steps_done == 0  # its last evaluation was at step 0
    assert first.workers == 2 and first.threads == 1 and first.backend == "local"
    # the live table saw the runs while they trained
    assert any(v.state == "running" for rows in views for v in rows)


def test_sweep_runs_are_ordinary_runs_with_their_grid_config(local_sweep):
    from induction_toolkit.run_dir import read_run_config

    out, first, _, _, _ = local_sweep
    for r in first.runs:
        train = read_run_config(r.run_dir)["train"]
        assert {k: train[k] for k in r.params} == r.params
        assert train["model_overrides"] == TINY["model_overrides"]


def test_sweep_numbers_equal_a_direct_run_and_dynamics(local_sweep):
    """The pool trains exactly the point's config: the same numbers as training it in this
    process; the summary agrees with the metrics (brute force) and with induct dynamics."""
    import torch

    from induction_toolkit.dynamics import run_dynamics
    from induction_toolkit.run_dir import read_metrics
    from induction_toolkit.training import TrainConfig, train

    out, first, _, _, _ = local_sweep
    run = first.runs[0]  # seed 1, lr 3e-3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            direct = train(TrainConfig(**{**TINY, **run.params}), None, handle_signals=False)
    finally:
        torch.set_num_threads(threads)
    rows = read_metrics(run.run_dir)
    assert [r["eval_loss"] for r in rows] == [r["eval_loss"] for r in direct.metrics]
    assert run.final_loss == direct.metrics[-1]["eval_loss"]
    assert run.max_prefix_matching == max(np.max(r["prefix_matching"]) for r in rows)
    dyn = run_dynamics(run.run_dir)
    assert run.onset_step == dyn.induction_onset_step
    peak = max(h.max_prefix_matching for h in dyn.heads
               if (h.layer, h.head) == dyn.strongest_head)
    assert (run.induction_layer is None) == (peak < 0.5)


def test_rerun_skips_finished_runs_and_retries_failed_ones(local_sweep):
    out, first, second, mtimes, _ = local_sweep
    states = {r.name: (r.state, r.attempts) for r in second.runs}
    assert states == {"seed-1_lr-0.003": ("skipped", 1), "seed-1_lr-1000000.0": ("failed", 2)}
    for r in second.runs:
        if r.state == "skipped":  # untouched: same checkpoints, same numbers
            assert sorted(p.stat().st_mtime_ns for p in r.run_dir.rglob("*.safetensors")) == \
                mtimes[r.name]
            assert r.final_loss == next(f.final_loss for f in first.runs if f.name == r.name)


def test_json_contract_and_status(local_sweep):
    out, _, second, _, _ = local_sweep
    doc = second.to_dict()
    assert set(doc) >= {"runs", "backend", "wall_s"}
    for run in doc["runs"]:
        assert set(run) >= {"params", "state", "final_loss", "max_prefix_matching",
                            "induction_layer", "onset_step", "run_dir"}
        assert run["state"] in ("done", "failed", "skipped")
    json.dumps(doc, allow_nan=False)
    result = invoke("sweep", "--status", out, "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["coordinator_running"] is False
    assert status["counts"] == {"done": 1, "failed": 1}
    assert {r["name"]: r["step"] for r in status["runs"]} == \
        {"seed-1_lr-0.003": 30, "seed-1_lr-1000000.0": 0}
    table = invoke("sweep", "--status", out)
    assert table.exit_code == 0 and "non-finite" in table.stdout


def test_summary_figures_written(local_sweep):
    out, first, _, _, _ = local_sweep
    assert [p.name for p in first.figures] == ["lr.png"]  # one value of seed: no figure
    assert first.figures[0].read_bytes()[:4] == b"\x89PNG"


def test_a_sweep_directory_holding_another_config_is_refused(local_sweep):
    from induction_toolkit.sweep import run_sweep

    out = local_sweep[0]
    with pytest.raises(ConfigError, match="differs in batch_size"):
        run_sweep({**TINY, "batch_size": 4}, {"seed": [1], "lr": [3e-3]}, out)


def test_live_and_summary_tables_render(local_sweep):
    from rich.console import Console

    from induction_toolkit.sweep.live import LiveTable, live_table, summary_table
    from induction_toolkit.sweep.runner import RunView

    console = Console(record=True, width=120)
    rows = [RunView("a", {"seed": 1, "lr": 0.003}, "running", step=20, steps=30, loss=4.1234,
                    best_prefix_matching=0.123),
            RunView("b", {"seed": 1, "lr": 1e6}, "pending", steps=30)]
    console.print(live_table(rows))
    text = console.export_text()
    assert "seed=1 lr=0.003" in text and "20/30" in text and "4.123" in text and "0.12" in text
    assert "-/30" in text  # nothing measured yet: a dash, never 0
    with LiveTable() as live:  # draws on stderr without error
        live.update(rows)
    console.print(summary_table(local_sweep[1]))
    text = console.export_text()
    assert "failed" in text and "non-finite" in text and "done" in text
