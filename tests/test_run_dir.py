"""The run-directory format has one owner (run_dir.py): names, atomic writers, forgiving readers;
train_state.pt holds a typed TrainState and older files still resume bit for bit."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from induction_toolkit import run_dir
from induction_toolkit.errors import CheckpointError, ConfigError, RunDirError

ROOT = Path(__file__).resolve().parents[1]


# the run's own file names, not e.g. tokenizer_config.json
_RUN_FILE = re.compile(r"(?<![\w.-])(metrics\.jsonl|config\.json)\b")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_only_run_dir_spells_the_run_file_names():
    # Code (not prose: docstrings may explain the format) that spells a run file's name
    # outside run_dir.py would be a second owner of the format.
    offenders = []
    for path in sorted([*(ROOT / "induction_toolkit").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]):
        if path.name == "run_dir.py" and path.parent.name == "induction_toolkit":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docs
                    and _RUN_FILE.search(node.value)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offenders, "\n".join(offenders)


def test_importing_run_dir_imports_neither_torch_nor_transformer_lens():
    code = ("import sys, induction_toolkit.run_dir as r; r.read_metrics('.'); "
            "print(sorted(m for m in ('torch', 'transformer_lens', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_layout_is_the_one_design_md_documents():
    design = (ROOT.parent / "shared" / "design.md")
    text = design.read_text() if design.is_file() else ""
    # design.md: `config.json`, `metrics.jsonl`, `checkpoints/step_XXXXXXX.safetensors`, `figures/`
    assert (run_dir.CONFIG_FILENAME, run_dir.METRICS_FILENAME) == ("config.json", "metrics.jsonl")
    assert run_dir.checkpoint_path("r", 42) == Path("r/checkpoints/step_0000042.safetensors")
    assert run_dir.figures_dir("r") == Path("r/figures")
    assert run_dir.STATE_FILENAME == "train_state.pt"
    if text:
        for name in ("config.json", "metrics.jsonl", "step_XXXXXXX.safetensors", "figures/"):
            assert name in text


def _rows(n):
    return [{"step": 10 * i, "eval_loss": 1.0 / (i + 1), "prefix_matching": [[0.1 * i]]}
            for i in range(n)]


def test_metrics_round_trip_and_a_torn_last_line_is_left_out_with_a_note(tmp_path):
    run_dir.write_metrics(tmp_path, _rows(3))
    assert run_dir.read_metrics(tmp_path) == _rows(3)
    assert run_dir.read_metrics(tmp_path).notes == []
    path = tmp_path / run_dir.METRICS_FILENAME
    data = path.read_bytes()
    path.write_bytes(data[:-9])  # the last row cut mid-number, no newline
    rows = run_dir.read_metrics(tmp_path)
    assert rows == _rows(2)
    assert len(rows.notes) == 1 and "line 3" in rows.notes[0] and "left out" in rows.notes[0]
    # a line cut inside a multi-byte character is torn too, not a decode traceback
    path.write_bytes(data.splitlines(keepends=True)[0] + '{"step": 10, "x": "é'.encode()[:-1])
    rows = run_dir.read_metrics(tmp_path)
    assert rows == _rows(1) and len(rows.notes) == 1


def test_a_damaged_line_before_the_last_is_a_clean_error(tmp_path):
    lines = [json.dumps(r) for r in _rows(3)]
    lines[1] = lines[1][:10]
    (tmp_path / run_dir.METRICS_FILENAME).write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError, match="line 2"):
        run_dir.read_metrics(tmp_path)


def test_a_refused_metrics_write_leaves_the_previous_file(tmp_path):
    run_dir.write_metrics(tmp_path, _rows(2))
    with pytest.raises(ValueError):
        run_dir.write_metrics(tmp_path, [*_rows(2), {"step": 20, "eval_loss": float("nan")}])
    assert run_dir.read_metrics(tmp_path) == _rows(2)
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.METRICS_FILENAME]


def test_missing_metrics_are_empty_and_a_missing_config_is_not_a_run(tmp_path):
    assert run_dir.read_metrics(tmp_path) == []
    with pytest.raises(RunDirError, match="not a training run") as err:
        run_dir.read_run_config(tmp_path)
    assert isinstance(err.value, ConfigError)  # older callers catch ConfigError
    (tmp_path / run_dir.CONFIG_FILENAME).write_text('{"train": {"preset": 3, "steps": -1}')
    with pytest.raises(RunDirError, match="not a training run config"):
        run_dir.read_run_config(tmp_path)


def test_checkpoints_are_listed_by_step_and_other_files_ignored(tmp_path):
    ck = tmp_path / run_dir.CHECKPOINT_DIR
    ck.mkdir()
    for name in ("step_0000100.safetensors", "step_0000002.safetensors", "notes.txt",
                 ".step_0000003.safetensors.abc.tmp", "step_12.safetensors.bak"):
        (ck / name).write_bytes(b"")
    assert list(run_dir.list_checkpoints(tmp_path)) == [2, 100]
    assert run_dir.run_checkpoint(tmp_path).name == "step_0000100.safetensors"
    with pytest.raises(CheckpointError, match="no checkpoint at step 5; available: 2, 100"):
        run_dir.run_checkpoint(tmp_path, 5)
    assert run_dir.list_checkpoints(tmp_path / "nope") == {}


# --- TrainState in train_state.pt ---------------------------------------------------------------

def _cfg(steps):
    from induction_toolkit.training import TrainConfig

    return TrainConfig(preset="attn-only-1l", steps=steps, eval_every=4, batch_size=4,
                       checkpoint_every=4, log_checkpoints=0, device="cpu", seed=5, dropout=0.1)


def _same_run(a: Path, b: Path, step: int):
    wa = load_file(run_dir.checkpoint_path(a, step))
    wb = load_file(run_dir.checkpoint_path(b, step))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    def untimed(rows):
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]

    assert untimed(run_dir.read_metrics(a)) == untimed(run_dir.read_metrics(b))


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    from induction_toolkit.training import train

    out = tmp_path_factory.mktemp("whole") / "run"
    with torch.random.fork_rng(devices=[]):
        train(_cfg(8), out, handle_signals=False)
    return out


def test_train_state_is_typed_and_loads_with_weights_only(whole_run):
    from induction_toolkit.training import TrainState
    from induction_toolkit.training.state import load_state

    raw = torch.load(run_dir.state_path(whole_run), weights_only=True)
    assert "extra" not in raw and raw["step"] == 8
    assert set(raw["counters"]) == {"loss_sum", "loss_n", "best_pm", "elapsed"}
    saved = load_state(whole_run)
    assert isinstance(saved.train, TrainState) and saved.train.step == 8
    # evaluated at step 8: the running loss was handed to that row and restarted
    assert (saved.train.loss_sum, saved.train.loss_n) == (0.0, 0)
    rows = run_dir.read_metrics(whole_run)
    best = max(max(max(r) for r in row["prefix_matching"]) for row in rows)
    assert saved.train.best_pm == best


@pytest.mark.parametrize("old_format", [False, True])
def test_extending_a_run_from_its_state_is_bit_identical(tmp_path, whole_run, old_format):
    from induction_toolkit.training import train

    out = tmp_path / "run"
    with torch.random.fork_rng(devices=[]):
        train(_cfg(4), out, handle_signals=False)
    if old_format:  # as written before TrainState: counters in a free-form "extra" dict
        raw = torch.load(run_dir.state_path(out), weights_only=True)
        raw["extra"] = raw.pop("counters")
        del raw["format"]
        torch.save(raw, run_dir.state_path(out))
    with torch.random.fork_rng(devices=[]):
        result = train(_cfg(8), out, resume=True, handle_signals=False)
    assert result.resumed_from == 4
    _same_run(whole_run, out, 8)
