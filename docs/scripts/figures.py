"""Draw the site's figures with the toolkit itself and write them to ``docs/figures/``.

    python docs/scripts/figures.py           # rewrite every PNG
    python docs/scripts/figures.py --check   # redraw in memory; fail if any PNG differs

Every figure is cheap (seconds on a CPU): the training curves are read from the committed
quickstart run (``docs/generated/demo-run/metrics.jsonl``, written by ``quickstart.py``), the
planted circuit is built by hand, and Reddy's loss model is three numbers descending a closed form.
PNG bytes are deterministic (Agg, no timestamps), so ``--check`` compares bytes.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
METRICS = ROOT / "docs" / "generated" / "demo-run" / "metrics.jsonl"
sys.path.insert(0, str(ROOT))


def demo_training() -> bytes:
    """Quickstart run: in-context loss falls as layer 1's prefix-matching scores rise."""
    from induction_toolkit.viz.figures import new_figure, png_bytes

    rows = [json.loads(line) for line in METRICS.read_text().splitlines() if line.strip()]
    steps = np.array([r["step"] for r in rows])
    fig = new_figure(9.0, 3.2)
    ax_loss, ax_pm, ax_prev = fig.subplots(1, 3)
    ax_loss.plot(steps, [r["loss_first_half"] for r in rows], label="first half (no copy yet)")
    ax_loss.plot(steps, [r["loss_repeated_half"] for r in rows], label="repeated half")
    ax_loss.set(title="loss on repeated tokens", xlabel="step", ylabel="nats")
    ax_loss.legend(fontsize=7)
    for ax, key, layer, title in ((ax_pm, "prefix_matching", 1, "prefix-matching, layer 1"),
                                  (ax_prev, "previous_token", 0, "previous-token, layer 0")):
        per_head = np.array([r[key][layer] for r in rows])
        for h in range(per_head.shape[1]):
            ax.plot(steps, per_head[:, h], label=f"L{layer}H{h}")
        ax.set(title=title, xlabel="step", ylim=(0, 1))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def planted_scores() -> bytes:
    """Every score of every head of the hand-set circuit (L0H1 previous-token, L1H2 induction)."""
    from induction_toolkit import viz
    from induction_toolkit.planted import planted_induction_model
    from induction_toolkit.scores import score_model

    planted = planted_induction_model()
    scores = score_model(planted.model, bos_token_id=planted.bos_token_id, batch=16, seed=0)
    return viz.scores(scores).png()


def planted_blocks() -> bytes:
    """Block view of the planted previous-token head L0H1: the sub-diagonal in P·W_Kᵀ·W_Q·P."""
    from induction_toolkit import viz
    from induction_toolkit.planted import planted_induction_model
    from induction_toolkit.weights import analyze_weights

    planted = planted_induction_model()
    analysis = analyze_weights(planted.model)
    return viz.blocks(planted.model, 0, 1, analysis=analysis).png()


def reddy_loss() -> bytes:
    """Reddy (2023) Eq. 10 under gradient descent: plateau then cliff; no plateau when L = N."""
    from induction_toolkit.reddy.phenomenological import descend
    from induction_toolkit.viz.figures import new_figure, png_bytes

    fig = new_figure(5.0, 3.2)
    ax = fig.subplots()
    for n_labels in (32, 8):
        traj = descend(n=8, n_labels=n_labels, steps=3000)
        ax.plot(np.arange(traj.steps + 1), traj.loss, label=f"N = 8, L = {n_labels}")
        if traj.loss[-1] < traj.loss[0]:  # with L = N the origin is a saddle: no cliff
            ax.axvline(traj.cliff_step(), ls=":", color=ax.lines[-1].get_color())
    ax.set(title="Reddy Eq. 10 under gradient descent", xlabel="step", ylabel="loss (nats)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


FIGS = {"demo-training.png": demo_training, "planted-scores.png": planted_scores,
        "planted-blocks.png": planted_blocks, "reddy-loss.png": reddy_loss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed PNGs")
    args = ap.parse_args()
    stale = []
    for name, draw in FIGS.items():
        png = draw()
        path = FIGURES / name
        if args.check:
            if not path.exists() or path.read_bytes() != png:
                stale.append(name)
        else:
            FIGURES.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
    if stale:
        sys.stderr.write(f"docs/figures/ out of date: {', '.join(stale)}; "
                         "regenerate with: python docs/scripts/figures.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
