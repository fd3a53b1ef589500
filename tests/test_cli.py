"""The ``induct`` command end to end: tables, JSON, one-line errors, a light ``--help``."""

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.checkpoints import save_model
from induction_toolkit.models import build_model

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory, planted):
    """The planted circuit saved in every accepted format."""
    d = tmp_path_factory.mktemp("planted")
    model = planted.model
    cfg = dict(model.cfg.to_dict())
    (d / "cfg.json").write_text(json.dumps({"n_ctx": model.cfg.n_ctx, "normalization_type": None}))
    save_model(model, d / "toolkit.safetensors", task=planted.task_dict())
    torch.save({"config": cfg, "state_dict": model.state_dict()}, d / "tl.pt")
    torch.save(model.state_dict(), d / "bare.pt")
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, d / "bare.safetensors")
    return d


@pytest.mark.parametrize("name", ["toolkit.safetensors", "tl.pt", "bare.pt", "bare.safetensors"])
def test_score_ranks_planted_heads_first_in_every_format(planted_files, planted, name):
    result = invoke("score", planted_files / name, "--json", "--batch", 16)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    heads = data["heads"]
    assert {"layer", "head", "previous_token", "prefix_matching", "duplicate_token", "copying",
            "ov_eigen"} <= set(heads[0])
    best_prefix = max(heads, key=lambda r: r["prefix_matching"])
    best_prev = max(heads, key=lambda r: r["previous_token"])
    assert (best_prefix["layer"], best_prefix["head"]) == planted.induction_head
    assert (best_prev["layer"], best_prev["head"]) == planted.previous_token_head
    # without BOS (bare files carry no task) the score dips slightly at position 0, still ≥ 0.8
    assert best_prefix["prefix_matching"] >= 0.8 and best_prev["previous_token"] >= 0.9
    assert data["model"]["n_layers"] == 2 and isinstance(data["notes"], list)


def test_score_table_and_verdict(planted_files):
    result = invoke("score", planted_files / "toolkit.safetensors")
    assert result.exit_code == 0, result.output
    assert "prefix-match" in result.stdout
    assert "induction heads: L1H2 (1.00); previous-token heads: L0H1 (1.00)" in result.stdout


def test_random_model_json_is_finite_and_low(tmp_path):
    save_model(build_model("attn-only-2l", seed=3, device="cpu"), tmp_path / "r.safetensors")
    result = invoke("score", tmp_path / "r.safetensors", "--json", "--batch", 8)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # json.loads rejects nothing, so check finiteness directly
    for row in data["heads"]:
        for k in ("previous_token", "prefix_matching", "duplicate_token", "copying", "ov_eigen"):
            assert row[k] < 0.5 and abs(row[k]) != float("inf")
    assert data["induction_heads"] == [] and "none" in data["verdict"]


def test_planted_command_writes_a_scorable_checkpoint(tmp_path):
    out = tmp_path / "p.safetensors"
    assert invoke("planted", out).exit_code == 0
    result = invoke("score", out, "--json")
    assert json.loads(result.stdout)["induction_heads"][0]["label"] == "L1H2"


BAD = {
    "missing": lambda d: d / "nope.pt",
    "empty": lambda d: (d / "e.pt").write_bytes(b"") and None or d / "e.pt",
    "random": lambda d: (d / "r.bin").write_bytes(os.urandom(500)) and None or d / "r.bin",
    "dir": lambda d: d,
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2(tmp_path, case):
    path = BAD[case](tmp_path)
    result = invoke("score", path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--repeats", "1"], ["--batch", "0"], ["--seq-len", "0"]])
def test_bad_options(planted_files, args):
    result = invoke("score", planted_files / "toolkit.safetensors", *args)
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def _run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)],
                          capture_output=True, text=True, **kw)


def test_real_process_errors_have_no_traceback_and_run_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    payload = tmp_path / "evil.pt"
    subprocess.run([sys.executable, "-c",
                    "import os, sys, torch\n"
                    "class E:\n"
                    "    def __reduce__(self): return (os.system, ('touch ' + sys.argv[1],))\n"
                    "torch.save({'state_dict': E()}, sys.argv[2])", str(marker), str(payload)],
                   check=True)
    proc = _run_cli("score", payload)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not marker.exists()


def test_help_imports_neither_torch_nor_transformer_lens():
    code = ("import sys\nfrom cli.main import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformer_lens') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    # the top-level page is drawn without typer.rich_utils (markdown-it): its 60 ms import
    # would double the start-up time
    code = code.replace("heavy = [m for m in ('torch', 'transformer_lens')", "heavy = [m for m in ('typer.rich_utils', 'markdown_it')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_top_level_help_lists_every_command_with_its_summary():
    from typer.main import get_command

    from cli.main import app

    group = get_command(app)
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    assert "Usage:" in r.output and "--help" in r.output
    names = [n for n, c in group.commands.items() if not c.hidden]
    assert len(names) >= 10
    for name in names:
        summary = " ".join(group.commands[name].help.split("\n\n")[0].split())
        line = next((ln for ln in r.output.splitlines() if f" {name} " in ln), None)
        assert line is not None, f"{name} missing from --help"
        assert summary[:40] in " ".join(r.output.split()), f"{name}'s summary missing"
