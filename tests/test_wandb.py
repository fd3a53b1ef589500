"""--wandb on train and sweep (issue 16): offline W&B runs hold every metrics row, in one group.

W&B runs offline (``WANDB_MODE=offline``, no network); the records are read back from the
``.wandb`` file with a small reader of its record log (written here, not wandb's), so the test
checks what was logged rather than that a call was made.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli._wandb import DEFAULT_PROJECT, expand_bare_wandb
from induction_toolkit.wandb_log import flatten_row

from test_sweep import TINY_CLI


def test_bare_wandb_gets_the_default_project():
    assert expand_bare_wandb(["--wandb"]) == [f"--wandb={DEFAULT_PROJECT}"]
    assert expand_bare_wandb(["--wandb", "--out", "x"]) == [f"--wandb={DEFAULT_PROJECT}", "--out", "x"]
    assert expand_bare_wandb(["--wandb", "proj", "--out", "x"]) == ["--wandb", "proj", "--out", "x"]
    assert expand_bare_wandb(["--out", "x"]) == ["--out", "x"]


def test_flatten_row_one_scalar_per_head():
    row = {"step": 10, "eval_loss": 2.5, "train_loss": None, "icl_windows": {"early": [1, 2]},
           "prefix_matching": [[0.1, 0.7], [0.2, 0.3]]}
    assert flatten_row(row) == {"eval_loss": 2.5, "prefix_matching/L0H0": 0.1,
                                "prefix_matching/L0H1": 0.7, "prefix_matching/L1H0": 0.2,
                                "prefix_matching/L1H1": 0.3, "prefix_matching/max": 0.7}


def _records(path: Path):
    """Protobuf records of a W&B ``.wandb`` file (a LevelDB-style log: 7-byte header, 32 KiB
    blocks of [crc32 (4), length (2, little-endian), type (1: full, 2-4: first/middle/last)])."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield pb.Record.FromString(buf)
            buf = b""


def _logged(run_dir: Path) -> tuple[dict, dict[int, dict]]:
    """(run record fields, {step: {key: value}}) of the W&B runs written under ``run_dir``."""
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {run_dir}"
    run, history = {}, {}
    for f in files:
        for rec in _records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run = {"project": rec.run.project, "group": rec.run.run_group,
                       "id": rec.run.run_id}
            elif kind == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                         for i in rec.history.item}
                history.setdefault(int(items.get("_step", rec.history.step.num)), {}).update(items)
    return run, history


def _env(tmp_path):
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache")}


@pytest.mark.slow
def test_train_wandb_offline_logs_every_metrics_row(tmp_path):
    from induction_toolkit.run_dir import read_metrics

    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "cli.main", "train", *TINY_CLI, "--quiet",
                           "--out", str(run_dir), "--wandb", "itk-test"],
                          capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr
    run, history = _logged(run_dir)
    assert run["project"] == "itk-test"
    assert run["id"] == (run_dir / "wandb-run-id").read_text().strip()
    rows = read_metrics(run_dir)
    assert sorted(history) == [r["step"] for r in rows]
    for r in rows:
        assert history[r["step"]]["eval_loss"] == r["eval_loss"]
        assert history[r["step"]]["prefix_matching/max"] == max(max(x) for x in r["prefix_matching"])
    # the dynamics figures, logged at the end
    assert any(k.startswith("figures/") for h in history.values() for k in h)


@pytest.mark.slow
def test_sweep_wandb_runs_share_a_group(tmp_path):
    out = tmp_path / "my-sweep"
    proc = subprocess.run([sys.executable, "-m", "cli.main", "sweep", *TINY_CLI, "--quiet",
                           "--json", "--out", str(out), "--grid", "seed=0,1", "--workers", "2",
                           "--wandb"],
                          capture_output=True, text=True, env=_env(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["state"] for r in doc["runs"]] == ["done", "done"]
    groups = set()
    for r in doc["runs"]:
        run, history = _logged(Path(r["run_dir"]))
        assert run["project"] == DEFAULT_PROJECT
        groups.add(run["group"])
        assert history[30]["eval_loss"] == r["final_loss"]
    assert groups == {"my-sweep"}
