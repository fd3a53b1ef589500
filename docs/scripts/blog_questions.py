"""Answer one of the blog's three open questions with sweeps (docs/blog-questions.md).

    python docs/scripts/blog_questions.py layer       # 8 seeds of the quick blog run
    python docs/scripts/blog_questions.py precursors  # the same runs, read for precursors
    python docs/scripts/blog_questions.py killers     # dropout / weight decay / lr

Runs go through ``induction_toolkit.sweep.run_sweep`` into ``--out/<scale>/<sweep>`` (finished runs
are skipped, killed ones resumed, so re-running is cheap); the answer is written to
``--out/<scale>/<question>.json`` and ``.png``, and ``--figures`` copies the PNG to
``docs/figures/blog-<question>.png``. A script rather than an ``induct`` subcommand: it is a
study whose output is a docs page, and its one reusable piece is the library function
``induction_toolkit.reproduce.blog_questions.answer``.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, answer the question, print a summary (or the JSON)."""
    from induction_toolkit.errors import InductionToolkitError
    from induction_toolkit.reproduce import blog_questions as bq

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("question", choices=bq.QUESTIONS)
    ap.add_argument("--out", type=Path, default=Path("runs/blog-questions"))
    ap.add_argument("--scale", choices=tuple(bq.SCALES), default="quick")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--grid", type=json.loads, default=None,
                    help='killers only: {"dropout": [0.3, 0.5], ...} (default: KILLER_GRID)')
    ap.add_argument("--workers", type=int, default=None, help="sweep processes (one thread each)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps per run (default: the scale's; the published tables for questions 1 and 3 used 600)")
    ap.add_argument("--figures", action="store_true", help="copy the PNG into docs/figures/")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        result = bq.answer(args.question, args.out, seeds=args.seeds, grid=args.grid,
                           workers=args.workers, steps=args.steps, scale=args.scale, progress=not args.json)
    except InductionToolkitError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    if args.figures and result.get("figure"):
        shutil.copyfile(result["figure"], ROOT / "docs" / "figures" / f"blog-{args.question}.png")
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(bq.summary_text(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
