"""Figures of training dynamics (log step axis): loss with the phase change shaded, every head's
prefix-matching score, the ICL score, the lag's two fitted onsets, and the blog reproduction
over seeds."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_write_bytes
from .figures import new_figure, png_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..dynamics import Dynamics

LAYER_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _positive(steps: np.ndarray, *ys: np.ndarray):
    keep = steps > 0  # step 0 has no place on a log axis
    return (steps[keep], *(y[keep] for y in ys))


def _mark(ax, dyn: "Dynamics") -> None:
    if dyn.phase_start is not None:
        ax.axvspan(max(dyn.phase_start, 1), max(dyn.phase_end, 1), color="gold", alpha=0.3,
                   label="phase change")
    if dyn.induction_onset_step is not None:
        ax.axvline(max(dyn.induction_onset_step, 1), color="tab:green", ls="--", lw=1,
                   label="induction onset (fit)")
    if dyn.lag.loss_onset_step is not None:
        ax.axvline(max(dyn.lag.loss_onset_step, 1), color="tab:purple", ls="-.", lw=1,
                   label="in-context loss onset (fit)")
    if dyn.loss_drop_step is not None:
        ax.axvline(max(dyn.loss_drop_step, 1), color="tab:red", ls=":", lw=1, label="loss drop")
    for i, b in enumerate((getattr(dyn, "stages", None) or {}).get("boundaries", [])):
        ax.axvline(max(b, 1), color="black", ls=(0, (1, 2)), lw=1.2,
                   label="LLC stage boundary" if i == 0 else None)


def loss_figure(rows: list[dict[str, Any]], dyn: "Dynamics") -> "Figure":
    """Eval, per-half and train loss (nats) against step (log scale), the phase change marked."""
    fig = new_figure(6.5, 3.6)
    ax = fig.add_subplot()
    steps = np.array([r["step"] for r in rows], float)
    for key, label in (("eval_loss", "eval loss"), ("loss_first_half", "first half"),
                       ("loss_repeated_half", "in-context (repeated half, 2nd token on)"),
                       ("train_loss", "train loss")):
        ys = np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
        x, y = _positive(steps, ys)
        ax.plot(x, y, label=label, lw=1.5 if key == "eval_loss" else 1)
    _mark(ax, dyn)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=7, ncols=2)
    ax.set_title("Loss; phase change from the ICL-score derivative")
    return fig


def prefix_matching_figure(rows: list[dict[str, Any]], dyn: "Dynamics",
                           key: str = "prefix_matching") -> "Figure":
    """Every head's ``key`` score (fraction of attention, in [0, 1]) against step, coloured by layer."""
    fig = new_figure(6.5, 3.6)
    ax = fig.add_subplot()
    steps = np.array([r["step"] for r in rows], float)
    values = np.array([r[key] for r in rows], float)  # [T, layer, head]
    for layer in range(values.shape[1]):
        for head in range(values.shape[2]):
            x, y = _positive(steps, values[:, layer, head])
            ax.plot(x, y, color=LAYER_COLORS[layer % len(LAYER_COLORS)],
                    alpha=0.5 + 0.5 * (head == 0), lw=1, label=f"L{layer}H{head}")
    _mark(ax, dyn)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel(key.replace("_", "-"))
    ax.legend(fontsize=6, ncols=max(1, values.shape[2]), loc="upper left")
    ax.set_title(f"Every head's {key.replace('_', '-')} score (colour = layer)")
    return fig


def icl_figure(rows: list[dict[str, Any]], dyn: "Dynamics") -> "Figure":
    """The ICL score (late minus early token loss, nats) against step, the phase change marked."""
    fig = new_figure(6.5, 3.2)
    ax = fig.add_subplot()
    steps = np.array([r["step"] for r in rows], float)
    # new runs: icl_score on held-out training samples; old runs may only have score_icl
    key = "icl_score" if all("icl_score" in r for r in rows) else "score_icl"
    if all(key in r for r in rows):
        x, y = _positive(steps, np.array([r[key] for r in rows], float))
        label = ("ICL score, held-out training samples" if dyn.icl_windows is not None
                 else f"ICL score (old run: {key})")
        ax.plot(x, y, color="black", lw=1.5, label=label)
    _mark(ax, dyn)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("late − early window loss (nats)")
    ax.legend(fontsize=7)
    w = dyn.icl_windows
    ax.set_title("In-context-learning score" + ("" if w is None else
                 f": tokens {w['late'][0]}–{w['late'][1]} minus {w['early'][0]}–{w['early'][1]}"))
    return fig


def lag_figure(rows: list[dict[str, Any]], dyn: "Dynamics") -> "Figure":
    """The strongest head's prefix-matching and the in-context loss, each with its fitted
    logistic and onset (linear step axis: the lag is a difference of steps)."""
    fig = new_figure(6.5, 3.6)
    ax = fig.add_subplot()
    twin = ax.twinx()
    steps = np.array([r["step"] for r in rows], float)
    layer, head = dyn.strongest_head
    loss = np.array([r.get("loss_repeated_half", r["eval_loss"]) for r in rows], float)
    pm = np.array([r["prefix_matching"][layer][head] for r in rows], float)
    ax.plot(steps, loss, ".", color="tab:red", ms=3, label="in-context loss")
    twin.plot(steps, pm, ".", color="tab:green", ms=3, label=f"L{layer}H{head} prefix-matching")
    grid = np.linspace(steps[0], steps[-1], 400)
    lag = dyn.lag
    if lag.loss_fit is not None:
        ax.plot(grid, lag.loss_fit(grid), color="tab:red", lw=1)
        ax.axvline(lag.loss_fit.centre, color="tab:red", ls=":", lw=1)
    if lag.score_fit is not None:
        twin.plot(grid, lag.score_fit(grid), color="tab:green", lw=1)
        twin.axvline(lag.score_fit.centre, color="tab:green", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("in-context loss (nats)")
    twin.set_ylabel("prefix-matching")
    twin.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="center left")
    twin.legend(fontsize=7, loc="center right")
    if lag.steps is None:
        ax.set_title("Lag: no onset on one of the two series")
    else:
        ci = "—" if lag.ci95 is None else f"[{lag.ci95[0]:+.0f}, {lag.ci95[1]:+.0f}]"
        ax.set_title(f"τ = t_score − t_loss = {lag.steps:+.0f} steps (95% CI {ci})")
    return fig


def llc_figure(dyn: "Dynamics") -> "Figure":
    """The LLC λ̂ per checkpoint (mean ± chain std), its smoothed curve and the stage boundaries
    (``induct stages``), beside the phase change and onsets (log step axis)."""
    st = dyn.stages
    fig = new_figure(6.5, 3.6)
    ax = fig.add_subplot()
    steps = np.array([r["step"] for r in st["llc"]], float)
    mean = np.array([r["mean"] for r in st["llc"]], float)
    std = np.array([r["std"] for r in st["llc"]], float)
    x, m, e, sm = _positive(steps, mean, std, np.array(st["smoothed"], float))
    ax.errorbar(x, m, yerr=e, fmt="o", ms=3, lw=1, label="λ̂ (mean ± std over chains)")
    ax.plot(x, sm, color="tab:gray", lw=1.5, label="smoothed")
    _mark(ax, dyn)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("local learning coefficient λ̂")
    ax.legend(fontsize=7, ncols=2)
    s = st["sampler"]
    ax.set_title(f"LLC (SGLD ε={s['lr']:g}, nβ={s['n_beta']:g}, γ={s['localization']:g}, "
                 f"{s['num_chains']}×{s['num_draws']})", fontsize=9)
    return fig


def write_dynamics_figures(rows: list[dict[str, Any]], dyn: "Dynamics",
                           directory: str | Path) -> list[Path]:
    """Write the loss, prefix-matching, previous-token, ICL and lag PNGs into ``directory``;
    returns their paths."""
    directory = Path(directory)
    out = []
    for name, fig in (("loss.png", loss_figure(rows, dyn)),
                      ("prefix_matching.png", prefix_matching_figure(rows, dyn)),
                      ("previous_token.png", prefix_matching_figure(rows, dyn, "previous_token")),
                      ("icl_score.png", icl_figure(rows, dyn)),
                      ("lag.png", lag_figure(rows, dyn))):
        out.append(atomic_write_bytes(directory / name, png_bytes(fig)))
    if getattr(dyn, "stages", None):
        out.append(atomic_write_bytes(directory / "llc_stages.png", png_bytes(llc_figure(dyn))))
    return out


def seeds_figure(runs: list[tuple[int, list[dict[str, Any]], "Dynamics"]]) -> "Figure":
    """Blog reproduction: per seed, loss and the strongest head's prefix-matching over training."""
    fig = new_figure(7.5, 3.6)
    ax = fig.add_subplot()
    twin = ax.twinx()
    for i, (seed, rows, dyn) in enumerate(runs):
        color = LAYER_COLORS[i % len(LAYER_COLORS)]
        steps = np.array([r["step"] for r in rows], float)
        layer, head = dyn.strongest_head
        loss = np.array([r["eval_loss"] for r in rows], float)
        pm = np.array([r["prefix_matching"][layer][head] for r in rows], float)
        x, l_, p_ = _positive(steps, loss, pm)
        ax.plot(x, l_, color=color, lw=1.5, label=f"seed {seed} loss")
        twin.plot(x, p_, color=color, lw=1, ls="--", label=f"seed {seed} L{layer}H{head} PM")
        if dyn.induction_onset_step is not None:
            ax.axvline(max(dyn.induction_onset_step, 1), color=color, lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("eval loss (solid)")
    twin.set_ylabel("prefix-matching of strongest head (dashed)")
    twin.set_ylim(0, 1.02)
    ax.legend(fontsize=6, loc="lower left")
    twin.legend(fontsize=6, loc="center left")
    ax.set_title("Copying task: loss drop vs induction score, per seed")
    return fig
