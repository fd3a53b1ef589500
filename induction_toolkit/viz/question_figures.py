"""Figures of the blog's three open questions (``reproduce.blog_questions``, ``docs/blog-questions.md``).

Each takes the question's JSON-ready result and the metrics rows of its runs (keyed by anything
with ``.name``, ``.seed`` and ``.params``), so it draws from what is on disk and computes nothing
the result does not already state.
"""

from typing import TYPE_CHECKING, Any

import numpy as np

from .dynamics_figures import LAYER_COLORS
from .figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def question_figure(question: str, result: dict[str, Any], rows: dict[Any, list[dict[str, Any]]]) -> "Figure":
    """The figure of ``question`` (``layer``, ``killers`` or ``precursors``)."""
    if question == "layer":
        return _layer(result, rows)
    if question == "killers":
        return _killers(result)
    return _precursors(result, rows)


def _steps(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([r["step"] for r in rows], float)


def _layer(result: dict[str, Any], rows: dict[Any, list[dict[str, Any]]]) -> "Figure":
    fig = new_figure(9, 3.4)
    ax, bar = fig.subplots(1, 2, width_ratios=[3, 1])
    by_seed = {p.seed: r for p, r in rows.items()}
    for s in result["seeds"]:
        r = by_seed[s["seed"]]
        pm = np.array([x["prefix_matching"] for x in r], float)  # [T, layer, head]
        best = pm.max(axis=2)  # per layer, the best head
        layer = s["layer"] if s["layer"] is not None else int(np.argmax(best[-1]))
        ax.plot(_steps(r), best[:, layer], color=LAYER_COLORS[layer % len(LAYER_COLORS)], lw=1,
                label=f"seed {s['seed']}: L{layer}" + ("" if s["formed"] else " (none formed)"))
    ax.axhline(result["induction_threshold"], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("prefix-matching, best head of the layer")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Strongest induction head per seed (colour = layer, 0-based)")
    n_layers = len(next(iter(rows.values()))[0]["prefix_matching"])
    counts = [result["layer_counts"].get(str(layer), 0) for layer in range(n_layers)]
    bar.bar(range(n_layers), counts, color=[LAYER_COLORS[i % len(LAYER_COLORS)] for i in range(n_layers)])
    bar.set_xticks(range(n_layers))
    bar.set_xlabel("layer of the induction head")
    bar.set_ylabel("seeds")
    bar.set_title(f"{result['n_formed']} of {result['n_seeds']} seeds formed one")
    return fig


def _killers(result: dict[str, Any]) -> "Figure":
    sweeps = result["sweeps"]
    fig = new_figure(3.3 * max(len(sweeps), 1), 3.4)
    axes = np.atleast_1d(fig.subplots(1, max(len(sweeps), 1)))
    for ax, (param, sweep) in zip(axes, sweeps.items()):
        pts = sweep["points"]
        xs = [p["value"] for p in pts]
        pos = np.arange(len(xs))  # equally spaced: the grids are roughly geometric
        for i, p in enumerate(pts):
            ys = [s["max_prefix_matching"] for s in p["seeds"]]
            colors = ["tab:green" if s["formed"] else "tab:red" for s in p["seeds"]]
            ax.scatter(np.full(len(ys), i) + np.linspace(-0.12, 0.12, len(ys)), ys, c=colors, s=14)
            ax.text(i, 1.02, f"{p['n_formed']}/{p['n_seeds']}", ha="center", fontsize=7)
        ax.plot(pos, [p["max_prefix_matching"]["mean"] for p in pts], color="black", lw=1)
        ax.axhline(result["induction_threshold"], color="grey", lw=0.8, ls=":")
        ax.set_xticks(pos, [f"{x:g}" + ("*" if p["is_base"] else "") for x, p in zip(xs, pts)],
                      fontsize=7)
        ax.set_xlabel(param.replace("_", " ") + " (* = base)")
        ax.set_ylim(0, 1.1)
    axes[0].set_ylabel("peak prefix-matching (green: formed)")
    fig.suptitle("What stops the induction head: seeds formed / seeds per value", fontsize=9)
    return fig


def _precursors(result: dict[str, Any], rows: dict[Any, list[dict[str, Any]]]) -> "Figure":
    fig = new_figure(10, 3.4)
    a, b, c = fig.subplots(1, 3)
    by_seed = {p.seed: r for p, r in rows.items()}
    for i, s in enumerate(result["seeds"]):
        onset = s["induction_onset_step"]
        if onset is None:
            continue
        r = by_seed[s["seed"]]
        x = _steps(r) - onset
        color = LAYER_COLORS[i % len(LAYER_COLORS)]
        pm = np.array([q["prefix_matching"] for q in r], float)
        a.plot(x, pm.reshape(len(r), -1).max(1), color=color, lw=1)
        for kind, ax in (("previous_token", b), ("duplicate_token", b)):
            if s.get(kind):
                v = np.array([q[kind][s[kind]["layer"]][s[kind]["head"]] for q in r], float)
                ax.plot(x, v, color=color, lw=1, ls="-" if kind == "previous_token" else "--")
        if s.get("bigram"):
            c.plot(x, [q["kl_to_bigram"] for q in r], color=color, lw=1)
    a.set_title("best prefix-matching")
    b.set_title("previous-token (solid), duplicate-token (dashed)\nstrongest head of each")
    c.set_title("KL(bigram ‖ model), held-out, nats")
    c.set_yscale("log")
    for ax in (a, b, c):
        ax.axvline(0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("step − induction onset")
    return fig
