"""Figures of the Musat reproduction: log-log emergence, pseudo-parameter trajectories, PCA, block view."""

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..viz.figures import FigureView, new_figure
from .emergence import KEY_PARAMS

LABELS = {"gamma3": "γ₃ (layer-2 copying)", "beta2": "β₂ (layer-2 token matching)",
          "alpha3": "α₃ (layer-1 previous position)"}


def loglog_figure(points: dict[str, list[tuple[int, float]]], fits: dict[str, dict[str, Any]]) -> FigureView:
    """Emergence step against N on log-log axes, one series per threshold, with the fitted lines."""
    fig = new_figure(5.0, 3.6)
    ax = fig.add_subplot()
    for (thr, pts), marker in zip(points.items(), "os^"):
        if not pts:
            continue
        ns, ts = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
        fit = fits.get(thr) or {}
        label = f"threshold {thr}"
        if fit.get("exponent") is not None:
            lo, hi = fit["ci95"]
            label += f": p = {fit['exponent']:.2f} [{lo:.2f}, {hi:.2f}]"
            grid = np.geomspace(ns.min(), ns.max(), 20)
            ax.plot(grid, np.exp(fit["intercept"]) * grid ** fit["exponent"], lw=1)
        ax.scatter(ns, ts, marker=marker, label=label, s=22)
    if any(points.values()):
        allp = [p for pts in points.values() for p in pts]
        n0 = min(p[0] for p in allp)
        t0 = np.median([p[1] for p in allp if p[0] == n0])
        grid = np.geomspace(n0, max(p[0] for p in allp), 20)
        ax.plot(grid, t0 * (grid / n0) ** 2, "k:", lw=1, label="slope 2 (theory)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (item–label pairs)")
    ax.set_ylabel("emergence step (last of α₃, β₂, γ₃)")
    ax.legend(fontsize=7)
    return FigureView(fig, title="Emergence time against N")


def trajectories_figure(runs: dict[int, dict[str, list[float]]], threshold: float) -> FigureView:
    """γ₃, β₂, α₃ against step for each N (one seed each), threshold dashed."""
    fig = new_figure(9.0, 3.0)
    axes = fig.subplots(1, 3, sharey=True)
    for ax, key in zip(axes, KEY_PARAMS):
        for n, run in sorted(runs.items()):
            ax.plot(run["steps"], run[key], lw=1, label=f"N={n}")
        ax.axhline(threshold, ls="--", color="grey", lw=0.8)
        ax.set_title(LABELS[key], fontsize=9)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)  # symlog would otherwise pad to a negative step
        ax.set_xlabel("step")
    axes[0].set_ylabel("pseudo-parameter")
    axes[0].legend(fontsize=7)
    return FigureView(fig, title="Pseudo-parameter trajectories")


def pca_figure(ratios: dict[int, Sequence[float]], var: float = 0.999) -> FigureView:
    """Cumulative explained variance of each N's weight trajectory against the number of components."""
    fig = new_figure(5.0, 3.2)
    ax = fig.add_subplot()
    for n, r in sorted(ratios.items()):
        k = np.arange(1, len(r) + 1)
        ax.plot(k, 1 - np.asarray(r) + 1e-16, marker=".", lw=1, label=f"N={n}")
    ax.axhline(1 - var, ls="--", color="grey", lw=0.8, label=f"{var:.1%} explained")
    ax.axvline(19, ls=":", color="k", lw=0.8, label="19")
    ax.set_yscale("log")
    ax.set_xlim(0.5, 40)
    ax.set_ylim(1e-8, 1.5)
    ax.set_xlabel("PCA components")
    ax.set_ylabel("unexplained variance")
    ax.legend(fontsize=7)
    return FigureView(fig, title="Dimension of the weight trajectory")


def block_view_figure(W1: np.ndarray, d_item: int, subdiagonal: float | None, n_pairs: int) -> FigureView:
    """Layer 1's ``W1`` as its 2×2 block image (item/position × item/position), queries in rows."""
    fig = new_figure(7.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    lim = float(np.abs(W1).max()) or 1.0
    im = ax1.imshow(W1, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax1.axhline(d_item - 0.5, color="k", lw=0.6)
    ax1.axvline(d_item - 0.5, color="k", lw=0.6)
    ax1.set_title("W1: [x; p] × [x; p]", fontsize=9)
    ax1.set_xlabel("key (items | positions)")
    ax1.set_ylabel("query")
    pp = W1[d_item:, d_item:]
    lim2 = float(np.abs(pp).max()) or 1.0
    ax2.imshow(pp, cmap="RdBu_r", vmin=-lim2, vmax=lim2)
    sub = "—" if subdiagonal is None else f"{subdiagonal:+.2f} σ"
    ax2.set_title(f"position–position block (N={n_pairs}), sub-diagonal {sub}", fontsize=9)
    ax2.set_xlabel("key position")
    ax2.set_ylabel("query position")
    fig.colorbar(im, ax=[ax1, ax2], shrink=0.7)
    return FigureView(fig, title="Block view of layer 1")
