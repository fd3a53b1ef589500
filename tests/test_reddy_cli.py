"""``induct train --task reddy`` and ``induct reproduce reddy``: bad input refused before writing, a run's files."""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.reddy.train import is_reddy_run, load_reddy
from induction_toolkit.reproduce.reddy import claims, phenomenological_summary
from induction_toolkit.run_dir import read_metrics, read_run_config

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("args", [
    ["--N", 8, "--B", 3], ["--L", 64, "--K", 32], ["--N", 40], ["--p-bursty", 1.5],
    ["--p-novel", -0.1], ["--eps", -0.1], ["--steps", 0], ["--preset", "blog-4l"],
])
def test_bad_reddy_options_exit_2_before_writing(tmp_path, args):
    out = tmp_path / "run"
    result = invoke("train", "--task", "reddy", "--out", out, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_reddy_options_refused_for_other_tasks(tmp_path):
    result = invoke("train", "--task", "repeated", "--K", 5, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--task reddy" in result.stderr


def test_reproduce_reddy_bad_figures(tmp_path):
    result = invoke("reproduce", "reddy", "--figures", "2a,9", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--figures" in result.stderr
    assert not (tmp_path / "x").exists()


def test_train_reddy_writes_a_run(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--preset", "reddy", "--task", "reddy", "--K", 64, "--B", 2, "--eps", 0.2,
                    "--steps", 4, "--eval-every", 2, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    cfg = read_run_config(out)
    assert cfg["train"]["task"] == "reddy" and cfg["train"]["lr"] == 0.01
    assert cfg["train"]["batch_size"] == 128 and cfg["train"]["weight_decay"] == 1e-6
    assert cfg["train"]["task_options"]["K"] == 64 and cfg["train"]["task_options"]["eps"] == 0.2
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [0, 2, 4]
    for key in ("ic_accuracy", "iw_accuracy", "swapped_accuracy", "ILA1", "TILA2", "CLA", "TLA2"):
        assert all(0 <= r[key] <= 1 for r in rows)
    assert is_reddy_run(out)
    model, task, config = load_reddy(out)
    assert task.config.K == 64 and config.steps == 4
    batch = task.eval_set("ic", 4, seed=0)
    assert model(batch.inputs).shape == (4, 32)
    result = invoke("score", out, "--json", "--batch", 16)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert [h["head"] for h in scores["heads"]] == ["L0H0", "L1H0"]
    assert all(0 <= h["induction"] <= 1 and 0 <= h["previous_token"] <= 1 for h in scores["heads"])
    assert 0 < scores["chance"]["induction"] < 1


def test_phenomenological_block_and_claims_shape():
    p = phenomenological_summary()
    assert p["grad_xi_at_origin"] == pytest.approx(-(32 - 8) / (32 * 17), rel=1e-12)
    assert 0 < p["slow_phase_steps"] <= p["cliff_step"]
    c = claims({}, p)
    assert [set(x) for x in c] == [{"figure", "paper", "ours", "holds"}]
    json.dumps(c)
