"""Run the quickstart's commands and write what they print into ``docs/generated/``.

The quickstart page includes these files, so its output is the code's output:

    python docs/scripts/quickstart.py            # train (800 steps) + score; rewrite the files
    python docs/scripts/quickstart.py --score    # re-score the committed run only (seconds)
    python docs/scripts/quickstart.py --check    # like --score, but fail on any difference
    python docs/scripts/quickstart.py --check --train   # retrain too, and compare (minutes)

The run's final checkpoint, ``config.json`` and ``metrics.jsonl`` are kept in
``docs/generated/demo-run/`` so that a change in scoring is caught without retraining; a change in
training is caught by ``--check --train`` (``tests/test_docs.py``, marked slow).
"""

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "generated"
RUN = OUT / "demo-run"
STEPS = 800
TRAIN = ["induct", "train", "--preset", "attn-only-2l", "--task", "repeated",
         "--steps", str(STEPS), "--out", "runs/demo"]
SCORE = ["induct", "score", "runs/demo"]
# Wide enough that no column header is cut; the page says so.
COLUMNS = "88"
FINAL = f"checkpoints/step_{STEPS:07d}.safetensors"


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, COLUMNS=COLUMNS, NO_COLOR="1", TERM="dumb")
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return "".join(line.rstrip() + "\n" for line in proc.stdout.splitlines())


def _compare(name: str, new: str) -> bool:
    old = (OUT / name).read_text() if (OUT / name).exists() else ""
    if old == new:
        return True
    sys.stderr.write(f"docs/generated/{name} differs from what the command prints now:\n")
    sys.stderr.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                               f"committed {name}", "now"))
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--score", action="store_true", help="re-score the committed run only")
    ap.add_argument("--check", action="store_true", help="compare, write nothing")
    ap.add_argument("--train", action="store_true", help="with --check: retrain as well")
    args = ap.parse_args()
    train = args.train or not (args.score or args.check)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = work / "runs" / "demo"
        if train:
            outputs = {"quickstart-train.txt": _run(TRAIN, work)}
        else:
            (run / "checkpoints").mkdir(parents=True)
            for name in ("config.json", "metrics.jsonl", FINAL):
                shutil.copy(RUN / name, run / name)
            outputs = {}
        outputs["quickstart-score.txt"] = _run(SCORE, work)
        if args.check:
            for name, text in outputs.items():
                ok &= _compare(name, text)
            if train:
                # config.json, not the checkpoint's bytes: float reductions may differ in the last
                # bit across CPUs, while what the two commands print (3 decimals) must not
                for name in ("config.json",):
                    if (run / name).read_bytes() != (RUN / name).read_bytes():
                        sys.stderr.write(f"the retrained run's {name} differs from "
                                         f"docs/generated/demo-run/{name}\n")
                        ok = False
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            for name, text in outputs.items():
                (OUT / name).write_text(text)
            if train:
                shutil.rmtree(RUN, ignore_errors=True)
                (RUN / "checkpoints").mkdir(parents=True)
                for name in ("config.json", "metrics.jsonl", FINAL):
                    shutil.copy(run / name, RUN / name)
    if not ok:
        sys.stderr.write("regenerate with: python docs/scripts/quickstart.py\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
