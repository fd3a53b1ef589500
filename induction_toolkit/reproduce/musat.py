"""Musat et al. 2025 (``seeds/003_musat2025_emergence_induction_heads_abstract.txt``), our CPU protocol.

For every ``N`` and seed: the disentangled transformer (``musat.model``) from zero init, plain
gradient descent with a fixed learning rate on fresh large batches of the item–label task with
orthonormal items (``D = 2N``). Reported: the step each of ``γ₃, β₂, α₃`` crosses the threshold
(0.5 and 0.1), their order, the induction head's emergence step (the last crossing), the fit
``log t = p log N + c`` over every (N, seed) with a bootstrap interval for ``p``, the weight
trajectory's PCA dimension and its residual outside the 19-value basis, and the layer-1
position–position block's sub-diagonal score at the largest ``N``. ``docs/musat.md`` lists every
choice (also in the JSON's ``choices``).
"""

import json
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..checkpoints import save_model
from ..musat.basis import trajectory_pca_dim
from ..musat.emergence import KEY_PARAMS, crossings, emergence_step, fit_exponent, order
from ..musat.model import MusatConfig, to_hooked
from ..musat.train import TrainSettings, Trajectory, train_musat
from ..weights.circuits import subdiagonal_score

THRESHOLDS = (0.5, 0.1)
FULL_NS = (4, 8, 16, 32)
QUICK_NS = (3, 4, 6, 8)
FULL = TrainSettings(lr=2.0, batch=1024, max_steps=200_000, record_every=10, dtype="float32")
QUICK = TrainSettings(lr=2.0, batch=256, max_steps=20_000, record_every=5, dtype="float32")


def choices(settings: TrainSettings, threshold: float) -> dict[str, Any]:
    """Every choice the paper's available text leaves open (also in docs/musat.md)."""
    return {
        "items": "orthonormal ±e_a (random axes and signs per sequence), D = 2N; option: gaussian",
        "positions": "one-hot absolute positions concatenated to the item: h0 = [x; p], d0 = D + 2N + 1",
        "attention": "causal, a position never attends to itself (key j < i); position 0 attends to itself",
        "value": "identity (disentangled: each layer concatenates its input and output); no MLP, no LayerNorm",
        "readout": "W3: R^{4 d0} → R^D, logits = inner products with the 2D item tokens; cross-entropy at the query",
        "init": "zero",
        "optimizer": f"plain gradient descent, lr {settings.lr}, fresh batch of {settings.batch} each step",
        "dtype": settings.dtype,
        "pseudo_parameters": "least-squares coefficients on I (content, positions) and the sub-diagonal S",
        "emergence": f"threshold crossing (linear interpolation between records every {settings.record_every} steps); "
                     f"the induction head's step is the last of α₃, β₂, γ₃; reported threshold {threshold}",
        "emergence_steps": "median over seeds",
        "fit": "scipy linregress of log step on log N over every (N, seed); 2000 bootstrap resamples",
        "accuracy_jump": "first record with accuracy ≥ (1 + 1/N)/2 (halfway from guessing among the context labels to perfect)",
        "subspace_dim": "PCA of the flattened weights over the recorded checkpoints, components for 99.9% variance; max over runs",
        "subspace_residual": "‖W − projection on the 19-value basis‖/‖W‖ at the end of training; max over runs",
    }


@dataclass
class MusatResult:
    """Per-run trajectories and the summary dictionary (``to_dict``), figures written to ``out``."""

    summary: dict[str, Any]
    trajectories: dict[tuple[int, int], Trajectory] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (issue 15's keys, plus more)."""
        return self.summary


def _summarise(trajs: dict[tuple[int, int], Trajectory], threshold: float,
               settings: TrainSettings) -> dict[str, Any]:
    ns = sorted({n for n, _ in trajs})
    per_thr: dict[str, Any] = {}
    for thr in dict.fromkeys((threshold, *THRESHOLDS)):
        cross = {f"{n}:{s}": crossings(t.steps, t.params, thr) for (n, s), t in trajs.items()}
        em = {(n, s): emergence_step(cross[f"{n}:{s}"]) for (n, s) in trajs}
        pts = [(n, t) for (n, _), t in sorted(em.items()) if t is not None]
        orders = Counter(tuple(order(c)) for c in cross.values())
        by_n = {str(n): _median([em[n, s] for (m, s) in trajs if m == n]) for n in ns}
        acc_before = [trajs[k].accuracy_step() is not None and em[k] is not None
                      and all(v is not None and v <= trajs[k].accuracy_step() for v in cross[f"{k[0]}:{k[1]}"].values())
                      for k in trajs]
        per_thr[str(thr)] = {
            "emergence_steps": by_n,
            "emergence_steps_per_seed": {f"{n}": {str(s): em[n, s] for (m, s) in trajs if m == n} for n in ns},
            "crossings": cross,
            "fit": fit_exponent([p[0] for p in pts], [p[1] for p in pts]),
            "order": list(orders.most_common(1)[0][0]) if orders else [],
            "order_agreement": orders.most_common(1)[0][1] / len(cross) if orders else None,
            "crossed_before_accuracy_jump": sum(acc_before) / len(acc_before) if acc_before else None,
            "points": pts,
        }
    main = per_thr[str(threshold)]
    dims, residuals, sym, ratios = [], [], [], {}
    for (n, s), t in trajs.items():
        dim, ratio = trajectory_pca_dim(torch.stack(t.flat))
        dims.append(dim)
        residuals.append(t.residual[-1])
        sym.append(t.symmetry_residual[-1])
        if s == min(s2 for (m, s2) in trajs if m == n):
            ratios[n] = ratio[:40]
    n_max = ns[-1]
    first = {n: trajs[n, min(s for (m, s) in trajs if m == n)] for n in ns}
    big = first[n_max]
    d = big.cfg.d_item
    sub = subdiagonal_score(big.weights.W1[d:, d:].double())
    return {
        "emergence_steps": main["emergence_steps"],
        "fit": {k: main["fit"][k] for k in ("exponent", "ci95", "r2")} | {
            k: v for k, v in main["fit"].items() if k not in ("exponent", "ci95", "r2")},
        "order": main["order"],
        "subspace_dim": max(dims),
        "subspace_residual": max(residuals),
        "subdiagonal": sub,
        "pseudo_params": {str(n): {k: t.params[k] for k in ("alpha3", "beta2", "gamma3")} | {"steps": t.steps}
                          for n, t in first.items()},
        "choices": choices(settings, threshold),
        "threshold": threshold,
        "thresholds": {k: {kk: vv for kk, vv in v.items() if kk != "points"} for k, v in per_thr.items()},
        "symmetry_residual": max(sym),
        "subspace_dims": {f"{n}:{s}": d_ for (n, s), d_ in zip(trajs, dims)},
        "accuracy_steps": {f"{n}:{s}": t.accuracy_step() for (n, s), t in trajs.items()},
        "final_pseudo_params": {str(n): {k: v[-1] for k, v in t.params.items()} for n, t in first.items()},
        "wall_s": {f"{n}:{s}": t.wall_s for (n, s), t in trajs.items()},
        "ms_per_step": {f"{n}:{s}": 1000 * t.wall_s / max(t.steps[-1], 1) for (n, s), t in trajs.items()},
        "_ratios": ratios,
        "_points": {k: v["points"] for k, v in per_thr.items()},
    }


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if len(vals) == len(values) and vals else None


def reproduce_musat(out: Path | None, *, ns: tuple[int, ...] | None = None, seeds: tuple[int, ...] = (0, 1, 2),
                    threshold: float = 0.5, quick: bool = False, settings: TrainSettings | None = None,
                    progress: Callable[[int, int, int, int], None] | None = None) -> MusatResult:
    """Train every (N, seed), summarise, and write ``summary.json``, the figures and models under ``out``."""
    settings = settings or (QUICK if quick else FULL)
    ns = tuple(ns or (QUICK_NS if quick else FULL_NS))
    trajs: dict[tuple[int, int], Trajectory] = {}
    for n in ns:
        for s in seeds:
            cfg = MusatConfig(n_pairs=n, d_item=2 * n)
            cb = (lambda step, total, loss, n=n, s=s: progress(n, s, step, total)) if progress else None
            trajs[n, s] = train_musat(cfg, s, settings, progress=cb)
    summary = _summarise(trajs, threshold, settings)
    ratios, points = summary.pop("_ratios"), summary.pop("_points")
    result = MusatResult(summary, trajs)
    if out is not None:
        _write(result, Path(out), ratios, points, threshold, settings)
    return result


def _write(result: MusatResult, out: Path, ratios: dict, points: dict, threshold: float,
           settings: TrainSettings) -> None:
    from ..musat import figures

    out.mkdir(parents=True, exist_ok=True)
    s = result.summary
    fits = {k: v["fit"] for k, v in s["thresholds"].items()}
    ns = sorted({n for n, _ in result.trajectories})
    first = {n: result.trajectories[n, min(sd for (m, sd) in result.trajectories if m == n)] for n in ns}
    views = {
        "emergence_loglog": figures.loglog_figure(points, fits),
        "pseudo_params": figures.trajectories_figure(
            {n: {"steps": t.steps, **{k: t.params[k] for k in KEY_PARAMS}} for n, t in first.items()}, threshold),
        "pca": figures.pca_figure(ratios),
        "block_view": figures.block_view_figure(first[ns[-1]].weights.W1.double().numpy(),
                                                first[ns[-1]].cfg.d_item, s["subdiagonal"], ns[-1]),
    }
    for name, view in views.items():
        result.figures[name] = view.save(out / f"{name}.png")
    for (n, sd), t in result.trajectories.items():
        if t.cfg.items == "orthonormal":
            save_model(to_hooked(t.weights, t.cfg), out / f"N{n}_seed{sd}.safetensors",
                       task={"name": "musat-icl", "n_pairs": n, "d_item": t.cfg.d_item}, step=t.steps[-1], seed=sd,
                       extra={"musat": {"lr": settings.lr, "batch": settings.batch}})
    atomic_write_text(out / "summary.json", json.dumps(s, indent=2) + "\n")
