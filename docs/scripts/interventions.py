"""The three training-time intervention experiments of docs/interventions.md, one command each.

    python docs/scripts/interventions.py prev-clamp        # 1: L0H0 clamped to previous-token
    python docs/scripts/interventions.py ablate-layer0     # 2: every layer-0 head zero-ablated
    python docs/scripts/interventions.py induction-clamp   # 3: L1H0 clamped to induction
    python docs/scripts/interventions.py all               # the three, sharing the controls

Each trains the README's demo model (attn-only-2l, repeated tokens, 800 steps) for seeds 0–2 with
and without the intervention (``induct train`` with ``--clamp-pattern`` / ``--ablate``; the
controls are shared), runs ``induct dynamics``' analysis on every run, writes one figure per
experiment to ``docs/figures/interventions-*.png`` and every onset to
``docs/generated/interventions.json``. About 30 s per run on one idle CPU core.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

STEPS = 800
SEEDS = (0, 1, 2)
EXPERIMENTS = {
    "prev-clamp": (["--clamp-pattern", "L0H0=previous"], "L0H0 clamped to previous-token"),
    "ablate-layer0": (["--ablate", "L0H0,L0H1,L0H2,L0H3"], "every layer-0 head zero-ablated"),
    "induction-clamp": (["--clamp-pattern", "L1H0=induction"], "L1H0 clamped to induction"),
}


def _train(run: Path, seed: int, extra: list[str], eval_every: int = 10) -> None:
    if (run / "metrics.jsonl").is_file() and list((run / "checkpoints").glob("*800.safetensors")):
        return
    cmd = [sys.executable, "-m", "cli.main", "train", "--preset", "attn-only-2l", "--task",
           "repeated", "--steps", str(STEPS), "--seed", str(seed), "--out", str(run), "--quiet",
           "--eval-every", str(eval_every),
           *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def _summary(run: Path) -> dict:
    from induction_toolkit.dynamics import run_dynamics
    from induction_toolkit.run_dir import read_metrics

    dyn = run_dynamics(run)
    rows = read_metrics(run)
    last = rows[-1]
    pm1 = np.array(last["prefix_matching"])[1]
    return {"last_step": last["step"], "induction_onset_step": dyn.induction_onset_step,
            "strongest_head": f"L{dyn.strongest_head[0]}H{dyn.strongest_head[1]}",
            "loss_drop_step": dyn.loss_drop_step,
            "phase_change": [dyn.phase_start, dyn.phase_end],
            "final_loss_first_half": round(last["loss_first_half"], 4),
            "final_loss_repeated_half": round(last["loss_repeated_half"], 4),
            "final_layer1_prefix_matching": [round(float(x), 3) for x in pm1],
            "induction_heads": [f"L{h.layer}H{h.head}" for h in dyn.heads if h.is_induction]}


def _figure(name: str, label: str, runs: dict, seeds: list[int], out: Path) -> None:
    from induction_toolkit.run_dir import read_metrics
    from induction_toolkit.viz.figures import new_figure, png_bytes

    fig = new_figure(9.0, 3.2)
    ax_loss, ax_pm = fig.subplots(1, 2)
    for (kind, seed), run in sorted(runs.items()):
        rows = read_metrics(run)
        steps = [r["step"] for r in rows]
        style = dict(color="tab:blue" if kind == "control" else "tab:red", alpha=0.8, lw=1)
        tag = kind if seed == seeds[0] else None
        ax_loss.plot(steps, [r["loss_repeated_half"] for r in rows], label=tag, **style)
        ax_loss.plot(steps, [r["loss_first_half"] for r in rows], ls=":", **style)
        ax_pm.plot(steps, [max(r["prefix_matching"][1]) for r in rows], label=tag, **style)
    ax_loss.set(title="repeated half (solid) vs first half (dotted)", xlabel="step",
                ylabel="loss (nats)")
    ax_pm.set(title="best layer-1 prefix-matching (chance ≈ 0.05)", xlabel="step", ylim=(0, 1.02))
    ax_loss.legend(fontsize=7)
    fig.suptitle(f"{name}: {label} vs control, seeds {', '.join(map(str, seeds))}", fontsize=9)
    out.write_bytes(png_bytes(fig))


def main() -> None:
    """Run the chosen experiment(s) and write figures and onsets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "interventions")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--eval-every", type=int, default=20,
                        help="evaluation spacing of the intervention runs (controls: 10); their "
                             "evaluations run the hooked forward, the costly part")
    parser.add_argument("--no-train", action="store_true",
                        help="summarise the runs as they are (a run stopped early is analysed up "
                             "to its last evaluation, named in last_step)")
    parser.add_argument("--train-only", action="store_true",
                        help="train the runs; no figures or JSON (to run seeds in parallel)")
    args = parser.parse_args()
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    out_json = ROOT / "docs" / "generated" / "interventions.json"
    results = json.loads(out_json.read_text()) if out_json.is_file() else {}
    controls = {}
    for seed in args.seeds:
        run = args.runs / f"control-s{seed}"
        if not args.no_train:
            _train(run, seed, [])
        controls[seed] = run
    if not args.train_only:
        results["control"] = {str(s): _summary(r) for s, r in controls.items()}
    for name in names:
        extra, label = EXPERIMENTS[name]
        runs = {("control", s): r for s, r in controls.items()}
        for seed in args.seeds:
            run = args.runs / f"{name}-s{seed}"
            if not args.no_train:
                _train(run, seed, extra, args.eval_every)
            runs[(name, seed)] = run
        if args.train_only:
            continue
        results[name] = {"intervention": " ".join(extra), "label": label,
                         "per_seed": {str(s): _summary(runs[(name, s)]) for s in args.seeds}}
        _figure(name, label, runs, args.seeds, ROOT / "docs" / "figures" / f"interventions-{name}.png")
        sys.stdout.write(f"{name} {json.dumps(results[name], indent=1)}\n")
    if args.train_only:
        return
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
