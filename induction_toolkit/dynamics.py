"""Training dynamics from a run's ``metrics.jsonl``: phase change, onsets, loss drop, blog lag fit.

Definitions (``shared/science.md``):

- **phase change**: where the smoothed derivative of the ICL score (per step) is most negative;
  the window is the contiguous stretch around that minimum where the derivative stays below half
  of it (full width at half minimum);
- **induction onset** of a head: the first evaluated step at which its prefix-matching score
  reaches half of its final value; the run's onset is that of its strongest induction head;
- **loss drop**: the first step at which the smoothed loss on the repeated half falls below the
  midpoint of its first and last values;
- **lag** (the blog's relation): fit ``L(t) ≈ a − b·s(t − τ)`` by least squares for every ``τ`` on a
  grid (``s`` linearly interpolated on the step axis, held constant beyond its ends) and keep the
  ``τ`` with the best ``R²``. ``τ > 0``: the loss follows the score ``τ`` steps later.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.stats import linregress

from .errors import ConfigError
from .scores import head_label


@dataclass
class HeadDynamics:
    layer: int
    head: int
    final_prefix_matching: float
    final_previous_token: float
    onset_step: int | None
    lag_steps: float
    r2: float

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "head": self.head, "label": head_label(self.layer, self.head),
                "final_prefix_matching": self.final_prefix_matching,
                "final_previous_token": self.final_previous_token,
                "onset_step": self.onset_step, "lag": {"steps": self.lag_steps, "r2": self.r2}}


@dataclass
class Dynamics:
    steps: np.ndarray
    phase_start: int
    phase_end: int
    phase_peak: int
    induction_onset_step: int
    loss_drop_step: int
    lag_steps: float
    lag_r2: float
    strongest_head: tuple[int, int]
    heads: list[HeadDynamics] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase_change": {"start_step": self.phase_start, "end_step": self.phase_end,
                             "steepest_step": self.phase_peak},
            "induction_onset_step": self.induction_onset_step,
            "loss_drop_step": self.loss_drop_step,
            "lag": {"steps": self.lag_steps, "r2": self.lag_r2},
            "strongest_head": {"layer": self.strongest_head[0], "head": self.strongest_head[1],
                               "label": head_label(*self.strongest_head)},
            "heads": [h.to_dict() for h in self.heads],
            "n_evals": int(len(self.steps)),
            "notes": list(self.notes),
        }


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter1d(np.asarray(values, dtype=float), sigma, mode="nearest") if sigma > 0 \
        else np.asarray(values, dtype=float)


def phase_change_window(steps: np.ndarray, icl: np.ndarray, *,
                        sigma: float = 1.0) -> tuple[int, int, int]:
    """(start, end, steepest) step of the window where the smoothed dICL/dstep is most negative."""
    d = np.gradient(smooth(icl, sigma), steps)
    peak = int(np.argmin(d))
    if d[peak] >= 0:
        return int(steps[peak]), int(steps[peak]), int(steps[peak])
    below = d <= d[peak] / 2
    lo = hi = peak
    while lo > 0 and below[lo - 1]:
        lo -= 1
    while hi < len(d) - 1 and below[hi + 1]:
        hi += 1
    return int(steps[lo]), int(steps[hi]), int(steps[peak])


def onset_step(steps: np.ndarray, score: np.ndarray) -> int | None:
    """First step at which ``score`` reaches half of its final value (None if it never rises)."""
    final = float(score[-1])
    if final <= 0:
        return None
    hit = np.nonzero(score >= final / 2)[0]
    return int(steps[hit[0]]) if len(hit) else None


def loss_drop_step(steps: np.ndarray, loss: np.ndarray, *, sigma: float = 1.0) -> int:
    s = smooth(loss, sigma)
    mid = (s[0] + s[-1]) / 2
    hit = np.nonzero(s <= mid)[0]
    return int(steps[hit[0]]) if len(hit) else int(steps[-1])


def lag_fit(steps: np.ndarray, loss: np.ndarray, score: np.ndarray, *,
            taus: np.ndarray | None = None) -> tuple[float, float]:
    """Best ``τ`` and its ``R²`` for ``loss(t) ≈ a − b·score(t − τ)``."""
    steps = np.asarray(steps, float)
    if taus is None:
        span = steps[-1] - steps[0]
        spacing = np.median(np.diff(steps)) if len(steps) > 1 else 1.0
        taus = np.arange(-span / 2, span / 2 + spacing / 4, max(spacing / 4, 1.0))
    best_tau, best_r2 = 0.0, -np.inf
    for tau in taus:
        shifted = np.interp(steps - tau, steps, score)
        if np.ptp(shifted) < 1e-12:
            continue
        fit = linregress(shifted, loss)
        r2 = fit.rvalue ** 2 if fit.slope < 0 else 0.0  # the relation is "more score, less loss"
        # prefer the smallest |τ| among ties so a flat R² curve does not drift to the grid's end
        if r2 > best_r2 + 1e-9 or (abs(r2 - best_r2) <= 1e-9 and abs(tau) < abs(best_tau)):
            best_tau, best_r2 = float(tau), float(r2)
    return best_tau, (best_r2 if np.isfinite(best_r2) else 0.0)


def analyse(rows: list[dict[str, Any]], *, sigma: float = 1.0) -> Dynamics:
    """Dynamics of a run from its metrics rows (as read from ``metrics.jsonl``)."""
    rows = sorted((r for r in rows if r.get("prefix_matching") is not None), key=lambda r: r["step"])
    if len(rows) < 3:
        raise ConfigError(f"need at least 3 evaluations to analyse dynamics, got {len(rows)}; "
                          "train longer or lower --eval-every")
    steps = np.array([r["step"] for r in rows], dtype=float)
    icl_key = "score_icl" if all("score_icl" in r for r in rows) else "icl_score"
    icl = np.array([r[icl_key] for r in rows], dtype=float)
    loss = np.array([r["eval_loss"] for r in rows], dtype=float)
    rep = np.array([r.get("loss_repeated_half", r["eval_loss"]) for r in rows], dtype=float)
    pm = np.array([r["prefix_matching"] for r in rows], dtype=float)  # [T, layer, head]
    pt = np.array([r["previous_token"] for r in rows], dtype=float)
    start, end, peak = phase_change_window(steps, icl, sigma=sigma)
    heads = []
    fit_from = 1 if steps[0] == 0 and len(steps) > 3 else 0  # step 0 is the untrained model
    for layer in range(pm.shape[1]):
        for head in range(pm.shape[2]):
            s = pm[:, layer, head]
            tau, r2 = lag_fit(steps[fit_from:], loss[fit_from:], s[fit_from:])
            heads.append(HeadDynamics(layer, head, float(s[-1]), float(pt[-1, layer, head]),
                                      onset_step(steps, s), tau, r2))
    strongest = max(heads, key=lambda h: h.final_prefix_matching)
    notes = []
    if strongest.onset_step is None:
        notes.append("no head's prefix-matching score rose; onset set to the last step")
    return Dynamics(steps=steps, phase_start=start, phase_end=end, phase_peak=peak,
                    induction_onset_step=strongest.onset_step if strongest.onset_step is not None
                    else int(steps[-1]),
                    loss_drop_step=loss_drop_step(steps, rep, sigma=sigma),
                    lag_steps=strongest.lag_steps, lag_r2=strongest.r2,
                    strongest_head=(strongest.layer, strongest.head), heads=heads, notes=notes)


def run_dynamics(run_dir: str | Path, *, sigma: float = 1.0) -> Dynamics:
    from .run_dir import read_metrics, read_run_config

    read_run_config(run_dir)
    return analyse(read_metrics(run_dir), sigma=sigma)
