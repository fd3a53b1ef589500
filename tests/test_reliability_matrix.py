"""Every file-reading command × every kind of bad input: one ``error: …`` line, exit 2, nothing run,
nothing written (issue 19).

The matrix is two tables: ``COMMANDS`` (what a command reads, and how it is called) and ``INPUTS``
(how to spoil a file of each kind). Adding a command is one ``Cmd`` row;
``test_every_file_reading_command_has_a_row`` discovers the subcommands from the Typer app and fails
for a command that has neither a row nor an entry in ``READS_NO_FILES``.

Commands take either a model (``{path}``: a checkpoint file or a run directory) or a run directory
(``{run}``). For a model command an input is the bad file itself; for a run command it is a copy
of a small finished run whose ``targets`` (config, metrics, checkpoint, state) are spoiled.
"""

import io
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit import run_dir as rd

runner = CliRunner()


# --- the commands -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cmd:
    """One way of calling a command on a bad input.

    ``argv``: arguments, formatted with ``path`` (the bad model), ``run`` (the bad run directory),
    ``good`` (a good checkpoint) and ``out`` (an empty folder for outputs). ``slot``: "model",
    "run" or "config" (``{path}`` is then a ``--config`` JSON file). ``targets``: for a run command, which of its files are spoiled. ``run_at``: where the
    run sits under ``out`` when the command names a parent (reproduce). ``tolerates``: inputs the
    command reads past on purpose (a torn last metrics line, for a command that only reads).
    """

    name: str
    argv: tuple[str, ...]
    slot: str = "model"
    targets: tuple[str, ...] = ()
    run_at: str | None = None
    tolerates: tuple[str, ...] = ()  # inputs this command reads past with a note, exit 0

    @property
    def command(self) -> str:
        return self.argv[0]


SMALL = ("--batch", "2", "--seq-len", "5", "--device", "cpu")
COMMANDS = [
    Cmd("score", ("score", "{path}", "--json", *SMALL)),
    Cmd("ablate", ("ablate", "{path}", *SMALL)),
    Cmd("patch", ("patch", "{path}", *SMALL)),
    Cmd("weights", ("weights", "{path}", "--out", "{out}/views", "--max-tokens", "8",
                    "--max-positions", "8", "--baseline-samples", "2")),
    Cmd("report", ("report", "{path}", "--out", "{out}/report.html", *SMALL)),
    Cmd("compare", ("compare", "{path}", "{good}", "--out", "{out}/compare.png", *SMALL)),
    # the --config file every model command takes, spoiled (the checkpoint itself is good)
    Cmd("score-config", ("score", "{good}", "--config", "{path}", *SMALL), slot="config"),
    Cmd("dynamics", ("dynamics", "{run}", "--no-figures"), slot="run",
        targets=("config", "metrics"), tolerates=("torn-metrics",)),
    Cmd("train-resume-config", ("train", "--resume", "{run}", "--quiet"), slot="run",
        targets=("config",)),
    Cmd("train-resume-state", ("train", "--resume", "{run}", "--quiet"), slot="run",
        targets=("state",)),
    Cmd("train-resume-checkpoint", ("train", "--resume", "{run}", "--quiet"), slot="run",
        targets=("checkpoint",)),
    Cmd("train-resume-metrics", ("train", "--resume", "{run}", "--quiet"), slot="run",
        targets=("metrics",)),
    # reproduce resumes the runs already under --out: spoil the one it would resume first
    Cmd("reproduce-blog", ("reproduce", "blog", "--quick", "--seeds", "0", "--inits", "unit",
                           "--device", "cpu", "--out", "{out}/blog"), slot="run",
        targets=("config", "state"), run_at="blog/unit/seed_0"),
]
# Subcommands that read no file a user passes in (only write one).
# stages reads the run's config (its task), its checkpoints and its metrics (the phase-change window)
COMMANDS.append(Cmd("stages", ("stages", "{run}", "--no-save", "--chains", "2", "--draws", "2",
                               "--sequences", "8", "--batch-size", "4", "--max-checkpoints", "3"),
                    slot="run", targets=("config", "checkpoint", "metrics"),
                    tolerates=("torn-metrics",)))

# sweep reads no file of a run it is handed: it trains its own grid under --out. What it does
# with a run directory there that holds another config (refused, exit 2) or fails (reported
# failed, the sweep goes on, exit 1) is tested in tests/test_sweep.py; --status on a directory
# that is not a sweep is refused there too.
READS_NO_FILES = {"planted", "sweep"}


# --- the good files everything is spoiled from -------------------------------------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """An 8-step attn-only-1l run stopped after step 6 (7 metrics rows, checkpoints 0, 3, 6: a
    resume has steps left to take), and the same files under the blog reproduction's quick config
    (reproduce resumes that run; its checkpoint belongs to another model, refused too)."""
    from induction_toolkit.reproduce.blog import blog_config
    from induction_toolkit.training import TrainConfig, train

    base = tmp_path_factory.mktemp("good")
    run = base / "run"
    cfg = TrainConfig(preset="attn-only-1l", steps=6, eval_every=1, batch_size=2,
                      checkpoint_every=3, log_checkpoints=0, device="cpu", eval_batch=4,
                      score_batch=4)
    with torch.random.fork_rng(devices=[]):
        train(cfg, run, handle_signals=False)
    stored = json.loads(rd.config_path(run).read_text())
    stored["train"]["steps"] = 8
    rd.config_path(run).write_text(json.dumps(stored))
    blog = base / "blog_run"
    shutil.copytree(run, blog)
    stored = json.loads(rd.config_path(run).read_text())
    stored["train"] = blog_config(True, "unit", device="cpu").to_dict()
    rd.config_path(blog).write_text(json.dumps(stored))
    return {"run": run, "blog_run": blog, "ckpt": rd.run_checkpoint(run)}


# --- the bad inputs -----------------------------------------------------------------------------

def _evil_torch_bytes(marker: Path, wrap) -> bytes:
    """A torch file whose unpickling would create ``marker`` (os.mkdir is the payload)."""

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    buf = io.BytesIO()
    torch.save(wrap(Payload()), buf)
    return buf.getvalue()


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _random_bytes(n=4096) -> bytes:
    return random.Random(19).randbytes(n)


def _truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def _bad_shapes_checkpoint(src: Path) -> bytes:
    """The toolkit's own format, metadata intact, one tensor cut to a shape the config contradicts."""
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    tensors = load_file(src)
    key = next(k for k in sorted(tensors) if k.endswith("W_Q"))
    tensors[key] = tensors[key][..., :-1].contiguous()
    tmp = src.parent / ".shapes.tmp"
    save_file(tensors, tmp, metadata=meta)
    data = tmp.read_bytes()
    tmp.unlink()
    return data


def _config_keys_checkpoint(src: Path) -> bytes:
    """The toolkit's format whose stored model config lacks d_model and has a key nobody knows."""
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    cfg = json.loads(meta["config"])
    del cfg["d_model"]
    cfg["d_modle"] = 64
    meta["config"] = json.dumps(cfg)
    tmp = src.parent / ".keys.tmp"
    save_file(load_file(src), tmp, metadata=meta)
    data = tmp.read_bytes()
    tmp.unlink()
    return data


def _bad_shapes_state(src: Path) -> bytes:
    """train_state.pt whose optimizer moments have shapes no parameter has."""
    state = torch.load(src, weights_only=True)
    for moments in state["optimizer"]["state"].values():
        for k in ("exp_avg", "exp_avg_sq"):
            moments[k] = torch.zeros(3)
    return _torch_bytes(state)


def _metrics_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in rd.metrics_path(run).read_text().splitlines()]


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _bad_shapes_metrics(run: Path) -> bytes:
    rows = _metrics_rows(run)
    rows[2]["prefix_matching"] = [[0.1, 0.2, 0.3]] * 3  # a row with another layer/head count
    return _jsonl(rows)


def _wrong_types_metrics(run: Path) -> bytes:
    rows = _metrics_rows(run)
    return _jsonl([rows[0], [1, 2, 3], *rows[1:]])


def _config_with(run: Path, edit) -> bytes:
    data = json.loads(rd.config_path(run).read_text())
    edit(data)
    return json.dumps(data).encode()


def _wrong_types_config(d):
    d["train"].update(model_overrides=[1, 2], device=5, steps="many")


def _keys_config(d):
    del d["train"]["lr"]
    d["train"]["lr_typo"] = 1.0


def _torn_metrics(run: Path) -> bytes:
    data = rd.metrics_path(run).read_bytes()
    return data[:-40]  # the last line loses its end: a copy or an old appending writer cut short


def _damaged_metrics(run: Path) -> bytes:
    lines = rd.metrics_path(run).read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:30] + b"\n"
    return b"".join(lines)


# How each input spoils each kind of file. A function of (the good file, the good run, marker);
# None: the input means nothing for that kind of file (the cell is not generated).
SPOIL = {
    "empty": dict(config=lambda f, r, m: b"", metrics=lambda f, r, m: b"",
                  checkpoint=lambda f, r, m: b"", state=lambda f, r, m: b"",
                  model=lambda f, r, m: b""),
    "random-bytes": dict(config=lambda f, r, m: _random_bytes(), metrics=lambda f, r, m: _random_bytes(),
                         checkpoint=lambda f, r, m: _random_bytes(),
                         state=lambda f, r, m: _random_bytes(), model=lambda f, r, m: _random_bytes()),
    "truncated": dict(config=lambda f, r, m: _truncated(f), checkpoint=lambda f, r, m: _truncated(f),
                      state=lambda f, r, m: _truncated(f), model=lambda f, r, m: _truncated(f)),
    "code-pickle": dict(checkpoint=lambda f, r, m: _evil_torch_bytes(m, lambda p: {"state_dict": p}),
                        state=lambda f, r, m: _evil_torch_bytes(m, lambda p: {"step": 1, "optimizer": p}),
                        model=lambda f, r, m: _evil_torch_bytes(m, lambda p: {"config": p, "state_dict": {}})),
    "wrong-types": dict(config=lambda f, r, m: _config_with(r, _wrong_types_config),
                        metrics=lambda f, r, m: _wrong_types_metrics(r),
                        checkpoint=lambda f, r, m: _torch_bytes([1, 2, 3]),
                        state=lambda f, r, m: _torch_bytes(["step", 3]),
                        model=lambda f, r, m: _torch_bytes({"state_dict": [torch.zeros(2)]})),
    "inconsistent-shapes": dict(metrics=lambda f, r, m: _bad_shapes_metrics(r),
                                checkpoint=lambda f, r, m: _bad_shapes_checkpoint(f),
                                state=lambda f, r, m: _bad_shapes_state(f),
                                model=lambda f, r, m: _bad_shapes_checkpoint(f)),
    "config-keys": dict(config=lambda f, r, m: _config_with(r, _keys_config),
                        checkpoint=lambda f, r, m: _config_keys_checkpoint(f),
                        model=lambda f, r, m: _config_keys_checkpoint(f)),
    "damaged-metrics": dict(metrics=lambda f, r, m: _damaged_metrics(r)),
}
# A --config file: JSON of HookedTransformerConfig fields.
SPOIL_CONFIG_FILE = {
    "empty": lambda r, m: b"",
    "random-bytes": lambda r, m: _random_bytes(),
    "truncated": lambda r, m: _model_config(r)[:40],
    "code-pickle": lambda r, m: _evil_torch_bytes(m, lambda p: {"n_layers": p}),
    "wrong-types": lambda r, m: b"[1, 2, 3]",
    "inconsistent-shapes": lambda r, m: json.dumps({"d_model": 12, "d_head": 3}).encode(),
    "config-keys": lambda r, m: json.dumps({"n_head": 2}).encode(),  # a typo of n_heads
}


def _model_config(run: Path) -> bytes:
    return json.dumps(json.loads(rd.config_path(run).read_text())["model"]).encode()
# Inputs that are a whole path rather than a spoiled file.
WHOLE = ("missing-path", "not-a-run", "torn-metrics")
INPUTS = [*WHOLE[:2], *SPOIL, WHOLE[2]]


def _target_file(run: Path, target: str) -> Path:
    return {"config": rd.config_path(run), "metrics": rd.metrics_path(run),
            "checkpoint": rd.run_checkpoint(run), "state": rd.state_path(run)}[target]


def _applies(cmd: Cmd, inp: str) -> bool:
    if inp in WHOLE:
        # a torn last metrics line only matters to commands that read metrics
        return inp != "torn-metrics" or "metrics" in cmd.targets
    if cmd.slot == "config":
        return inp in SPOIL_CONFIG_FILE
    kinds = cmd.targets if cmd.slot == "run" else ("model",)
    return any(k in SPOIL[inp] for k in kinds)


def _build(cmd: Cmd, inp: str, good: dict, tmp: Path) -> tuple[list[str], Path, Path]:
    """The argv of this cell, its output folder and the marker a code-running pickle would create."""
    out, marker = tmp / "out", tmp / "PAYLOAD_RAN"
    out.mkdir()
    src_run = good["blog_run"] if cmd.run_at else good["run"]
    run = out / cmd.run_at if cmd.run_at else tmp / "run"
    path = tmp / "model.safetensors"
    if inp == "missing-path":
        run, path = tmp / "no_such_run", tmp / "no_such_model.safetensors"
        if cmd.run_at:  # a missing run under --out means "start it": a bad parent instead
            (out / "blog").write_text("a file, not a folder")
    elif inp == "not-a-run":
        for p in (run, path):
            p.mkdir(parents=True)
            (p / "notes.txt").write_text("not a run")
        if cmd.run_at:
            (run / rd.CONFIG_FILENAME).write_text(json.dumps({"notes": "no train section"}))
    elif cmd.slot == "run":
        shutil.copytree(src_run, run)
        path = run
        if inp == "torn-metrics":
            rd.metrics_path(run).write_bytes(_torn_metrics(run))
        for target in cmd.targets:
            spoil = SPOIL.get(inp, {}).get(target)
            if spoil is not None:
                f = _target_file(run, target)
                f.write_bytes(spoil(_target_file(src_run, target), src_run, marker))
    elif cmd.slot == "config":
        path = tmp / "cfg.json"
        path.write_bytes(SPOIL_CONFIG_FILE[inp](good["run"], marker))
    else:
        path.write_bytes(SPOIL[inp]["model"](good["ckpt"], good["run"], marker))
    argv = [a.format(path=path, run=run, good=good["ckpt"], out=out) for a in cmd.argv]
    return argv, out, marker


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


CELLS = [pytest.param(cmd, inp, id=f"{cmd.name}-{inp}")
         for cmd in COMMANDS for inp in INPUTS if _applies(cmd, inp)]


@pytest.mark.parametrize("cmd, inp", CELLS)
def test_bad_input_is_one_error_line_exit_2_nothing_run_nothing_written(cmd, inp, good, tmp_path):
    argv, out, marker = _build(cmd, inp, good, tmp_path)
    before = _snapshot(tmp_path)
    with torch.random.fork_rng(devices=[]):
        result = runner.invoke(app, argv)
    assert not marker.exists(), "a pickled payload ran"
    assert "Traceback" not in result.output
    if inp in cmd.tolerates:
        # A torn LAST line is what a copy cut short leaves: a reader leaves it out and names it
        # (run_dir.read_metrics). A resume refuses it (the history would have a hole); damage
        # anywhere else is an error for everyone (below).
        assert result.exit_code == 0, (result.output, result.exception)
        assert "line 7, the last, is incomplete" in result.output
        return
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    assert _snapshot(tmp_path) == before, "the failed command wrote or changed files"


def test_every_file_reading_command_has_a_row():
    from typer.main import get_command

    commands = set(get_command(app).commands)
    covered = {c.command for c in COMMANDS}
    missing = sorted(commands - covered - READS_NO_FILES)
    assert not missing, (f"add a Cmd row to COMMANDS (or to READS_NO_FILES) in {__file__} for: "
                         f"{', '.join(missing)}")
    assert not (covered | READS_NO_FILES) - commands, "a row names a command the app lacks"


def test_every_input_reaches_every_command_that_can_read_it():
    by_command = {c.name: {i for i in INPUTS if _applies(c, i)} for c in COMMANDS}
    for name in ("score", "ablate", "patch", "weights", "report", "compare"):
        assert by_command[name] == set(INPUTS) - {"damaged-metrics", "torn-metrics"}, name
    assert len(CELLS) >= 90, len(CELLS)


# --- a few cells through a real process: the true stderr and exit status -------------------------

@pytest.mark.parametrize("cmd_name, inp", [
    ("train-resume-state", "code-pickle"),
    pytest.param("dynamics", "wrong-types", marks=pytest.mark.slow),  # a second start-up: ~5 s
])
def test_real_process_prints_one_line_and_exits_2(cmd_name, inp, good, tmp_path):
    cmd = next(c for c in COMMANDS if c.name == cmd_name)
    argv, out, marker = _build(cmd, inp, good, tmp_path)
    before = _snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert not marker.exists()
    assert _snapshot(tmp_path) == before
