"""Reddy (2023)'s figures from finished runs: 1d, 2 (a–c), 3, 4 (with the minimal model), A.5, Eq. 10.

Each function takes the runs' results (objects with ``spec.params``, ``spec.kind``, ``metrics`` and,
for figure 3, ``snapshots``) and writes one small PNG; chance levels are drawn as dotted lines.
"""

import warnings
from pathlib import Path
from typing import Any

import numpy as np

COLORS = {"ILA1": "tab:orange", "TILA2": "tab:green", "CLA": "tab:blue", "TLA2": "tab:red",
          "ic_accuracy": "black"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(run, key):
    return (np.array([r["step"] for r in run.metrics], dtype=float),
            np.array([r.get(key, np.nan) if r.get(key) is not None else np.nan for r in run.metrics],
                     dtype=float))


def _save(fig, path: Path) -> Path:
    from ..atomic import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def fig1d(runs, path: Path) -> Path:
    """Training loss (left) and IC / IW / swapped accuracy (right) per seed, mean bold."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    for key, ax, color in (("train_loss", a, "tab:gray"), ("ic_accuracy", b, "black"),
                           ("iw_accuracy", b, "tab:purple"), ("swapped_accuracy", b, "tab:cyan")):
        ys = []
        for r in runs:
            x, y = _series(r, key)
            ax.plot(x, y, color=color, alpha=0.3, lw=0.8)
            ys.append(y)
        with warnings.catch_warnings():  # the loss has no value at step 0 (no step taken yet)
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(ys, 0)
        ax.plot(x, mean, color=color, lw=2, label=key.replace("_", " "))
    L = runs[0].spec.params["L"]
    b.axhline(1 / L, ls=":", color="gray", label=f"chance 1/L={1 / L:.2f}")
    a.set(xlabel="step", ylabel="training loss (nats)", title="Fig. 1d: B=2, K=512")
    b.set(xlabel="step", ylabel="accuracy", ylim=(0, 1.02))
    b.legend(fontsize=7)
    return _save(fig, path)


def fig2(by_fig: dict[str, list], path: Path) -> Path | None:
    """IW accuracy (top row) and IC accuracy (bottom row) against K (lines: B), ε and α."""
    cols = [f for f in ("2a", "2b", "2c") if by_fig.get(f)]
    if not cols:
        return None
    plt = _plt()
    fig, axes = plt.subplots(2, len(cols), figsize=(3.4 * len(cols), 5.4), squeeze=False,
                             layout="constrained")
    for j, f in enumerate(cols):
        runs = by_fig[f]
        for i, key in enumerate(("iw_accuracy", "ic_accuracy")):
            ax = axes[i, j]
            if f == "2a":
                for b in sorted({r.spec.params["B"] for r in runs}):
                    sel = [r for r in runs if r.spec.params["B"] == b]
                    ks = sorted({r.spec.params["K"] for r in sel})
                    ys = [np.mean([r.final()[key] for r in sel if r.spec.params["K"] == k]) for k in ks]
                    ax.plot(ks, ys, "o-", label=f"B={b}")
                ax.set_xscale("log", base=2)
                ax.set_xlabel("K")
                ax.legend(fontsize=7)
            else:
                p = "eps" if f == "2b" else "alpha"
                xs = sorted({r.spec.params[p] for r in runs})
                ys = [np.mean([r.final()[key] for r in runs if r.spec.params[p] == x]) for x in xs]
                ax.plot(xs, ys, "o-", color="k")
                ax.set_xlabel("ε" if p == "eps" else "α")
            ax.axhline(1 / 32, ls=":", color="gray")
            ax.set_ylim(0, 1.02)
            ax.set_ylabel("IW accuracy" if i == 0 else "IC accuracy")
            if i == 0:
                ax.set_title(f"Fig. {f}")
    return _save(fig, path)


def fig3(runs, path: Path) -> Path:
    """IC accuracy curve, and the attention maps before and after the transition (one sequence)."""
    plt = _plt()
    run = runs[0]
    x, y = _series(run, "ic_accuracy")
    t50 = next((int(s) for s, v in zip(x, y) if v >= 0.5), None)
    steps = sorted(run.snapshots)
    before = max([s for s in steps if t50 is None or s < t50] or steps[:1])
    after = steps[-1]
    fig = plt.figure(figsize=(10, 3.3))
    ax = fig.add_subplot(1, 3, 1)
    for r in runs:
        xx, yy = _series(r, "ic_accuracy")
        ax.plot(xx, yy, color="k", alpha=0.8 if r is run else 0.3)
    for s, c in ((before, "tab:blue"), (after, "tab:red")):
        ax.axvline(s, color=c, ls="--")
    ax.set(xlabel="step", ylabel="IC accuracy", ylim=(0, 1.02), title="Fig. 3a: p_C=0.8, B=1, K=256")
    for k, (s, c) in enumerate(((before, "before"), (after, "after"))):
        sub = fig.add_subplot(2, 3, 2 + k)
        sub.imshow(np.array(run.snapshots[s]["p1"]), cmap="viridis", vmin=0, vmax=1)
        sub.set_title(f"{c} (step {s}): layer 1", fontsize=8)
        sub.set_xticks([])
        sub.set_yticks([])
        sub2 = fig.add_subplot(2, 3, 5 + k)
        sub2.imshow(np.array(run.snapshots[s]["p2"])[None], cmap="viridis", vmin=0, vmax=1, aspect=1.5)
        sub2.set_title("layer 2, target's row", fontsize=8)
        sub2.set_yticks([])
    return _save(fig, path)


def fig4(runs, path: Path) -> Path:
    """Progress measures aligned at the step IC accuracy crosses 50%: network, minimal, minimal β₂=0."""
    plt = _plt()
    kinds = [k for k in ("network", "minimal", "minimal-beta2-0") if any(r.spec.kind == k for r in runs)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for r in (r for r in runs if r.spec.kind == kind):
            x, ic = _series(r, "ic_accuracy")
            t50 = next((s for s, v in zip(x, ic) if v >= 0.5), None)
            shift = 0 if t50 is None else t50
            for key, color in COLORS.items():
                _, y = _series(r, key)
                ax.plot(x - shift, y, color=color, lw=1.2, label=key if r is runs[0] or True else None)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=6)
        ax.set(xlabel="step − (IC crosses 50%)", ylim=(0, 1.02),
               title={"network": "Fig. 4: network", "minimal": "Fig. 6a: minimal (β₁, α, β₂)",
                      "minimal-beta2-0": "Fig. 6b: minimal, β₂ = 0"}[kind])
    return _save(fig, path)


def figa5(runs, path: Path) -> Path:
    """IC accuracy curves for L = N = 8 against L = 32 > N."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for r in runs:
        x, y = _series(r, "ic_accuracy")
        L = r.spec.params["L"]
        ax.plot(x, y, color="tab:red" if L == r.spec.params["N"] else "tab:blue",
                label=f"L={L}, N={r.spec.params['N']}")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7)
    ax.set(xlabel="step", ylabel="IC accuracy", ylim=(0, 1.02), title="Fig. A.5: K=256, B=1, p_C=0.8, ε=0")
    return _save(fig, path)


def fig_phenomenological(runs, path: Path, n: int = 8, n_labels: int = 32) -> Path:
    """Eq. 10 beside the network: its loss and parameters under gradient descent, its landscape
    (ξ, α at the final β₁) with the trajectory, and the network's IC loss for comparison."""
    from .phenomenological import descend, loss

    plt = _plt()
    traj = descend(n, n_labels, lr=0.1, steps=3000)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    a, b, c = axes
    a.plot(traj.loss, color="k", label="Eq. 10 loss")
    for name, color in (("xi", "tab:blue"), ("alpha", "tab:green"), ("beta1", "tab:orange")):
        a.plot(traj.param(name) / max(1e-9, np.abs(traj.param(name)).max()) * traj.loss[0],
               color=color, ls="--", label=f"{name} (scaled)")
    a.set(xlabel="gradient step", ylabel="loss (nats)", title=f"Eq. 10 (N={n}, L={n_labels})")
    a.legend(fontsize=6)
    xi = np.linspace(0, traj.param("xi").max() * 1.1, 80)
    al = np.linspace(0, traj.param("alpha").max() * 1.1, 80)
    X, A = np.meshgrid(xi, al)
    pts = np.stack([X, A, np.full_like(X, traj.param("beta1")[-1])], -1)
    cs = b.contourf(X, A, loss(pts, n, n_labels), levels=20, cmap="viridis")
    fig.colorbar(cs, ax=b)
    b.plot(traj.param("xi"), traj.param("alpha"), color="w", lw=1)
    b.plot(*traj.params[0, :2], "o", color="lime")
    b.plot(*traj.params[-1, :2], "o", color="red")
    b.set(xlabel="ξ", ylabel="α", title="landscape at final β₁")
    for r in runs:
        if r.spec.kind == "network":
            x, y = _series(r, "ic_loss")
            c.plot(x, y, color="k", alpha=0.6)
    c.set(xlabel="step", ylabel="IC loss (nats)", title="network (fig. 3 runs)")
    return _save(fig, path)


def draw_all(by_fig: dict[str, list[Any]], out: Path) -> dict[str, Path]:
    """Every figure whose runs are present, as ``out/figures/reddy_<fig>.png``."""
    d = Path(out) / "figures"
    d.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    if by_fig.get("1d"):
        made["1d"] = fig1d(by_fig["1d"], d / "reddy_1d.png")
    p = fig2(by_fig, d / "reddy_2.png")
    if p:
        made["2"] = p
    if by_fig.get("3"):
        made["3"] = fig3([r for r in by_fig["3"] if r.spec.kind == "network"], d / "reddy_3.png")
    if by_fig.get("4"):
        made["4"] = fig4(by_fig["4"], d / "reddy_4.png")
        made["eq10"] = fig_phenomenological(by_fig["4"], d / "reddy_eq10.png")
    if by_fig.get("a5"):
        made["a5"] = figa5(by_fig["a5"], d / "reddy_a5.png")
    return made
