"""The exported disentangled model under the toolkit's ordinary commands (slow: trains N = 6)."""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.checkpoints import save_model
from induction_toolkit.musat.model import MusatConfig, to_hooked
from induction_toolkit.musat.train import TrainSettings, train_musat

runner = CliRunner()


@pytest.fixture(scope="module")
def musat_file(tmp_path_factory):
    cfg = MusatConfig(6, 12)
    t = train_musat(cfg, 0, TrainSettings(lr=2.0, batch=256, record_every=5, dtype="float32"))
    path = tmp_path_factory.mktemp("musat") / "N6.safetensors"
    save_model(to_hooked(t.weights, t.cfg), path, step=t.steps[-1], seed=0)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command", [["score"], ["weights"], ["ablate"], ["patch"]])
def test_ordinary_commands_run_on_the_export(musat_file, command, tmp_path):
    extra = ["--out", str(tmp_path / "w")] if command == ["weights"] else []
    res = runner.invoke(app, [*command, str(musat_file), "--json", *extra])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["model"]["n_layers"] == 2 and d["model"]["n_ctx"] == 13
    if command == ["weights"]:
        l0 = next(h for h in d["heads"] if h["layer"] == 0)
        assert l0["subdiagonal"] > 0  # layer 1 of the disentangled model prefers the previous position
