"""Training dynamics from a run's ``metrics.jsonl``: phase change, onsets, loss drop, the blog's lag.

Definitions (``docs/training.md``, "Dynamics"):

- **phase change**: where the smoothed derivative of the ICL score (per step) is most negative;
  the window is the contiguous stretch around that minimum where the derivative stays below half
  of it (full width at half minimum). The ICL score is the one measured on held-out samples of the
  training distribution (``icl_score``), never the one on the scoring sequences;
- **onset** of a head: the centre ``t_s`` of a logistic ``s(t) ≈ s₀ + Δs·σ((t − t_s)/w_s)`` fitted
  to its prefix-matching score, for heads that become induction heads (prefix-matching reaches
  ``scores.INDUCTION_THRESHOLD``) and whose fit shows a transition (:func:`is_transition`);
  otherwise ``None``. The run's onset is that of its strongest induction head;
- **loss onset**: the centre ``t_ℓ`` of ``ℓ(t) ≈ ℓ₀ − Δℓ·σ((t − t_ℓ)/w_ℓ)`` fitted to the in-context
  (repeated-half) loss; **loss drop**: the first step at which the smoothed in-context loss falls
  below the midpoint of its first and last values;
- **lag** ``τ = t_s − t_ℓ`` (positive: the score lags the loss, the blog's direction), with a 95%
  interval from a residual bootstrap of both fits, each fit's ``R²``, and the blog's form
  ``ℓ(t) ≈ a − b·s(t + τ)`` (``b ≥ 0``) fitted on the steps where ``s(t + τ)`` is observed, beside
  its **null**: the same fit, at the same ``τ``, for the heads that never become induction heads.
  An ``R²`` is evidence only where it clearly beats that null.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

from .errors import ConfigError
from .scores import INDUCTION_THRESHOLD, head_label

# A fitted logistic counts as a transition only if it explains at least this share of the
# variance, its step is this many residual standard deviations tall, and it is no wider than this
# fraction of the observed span (a slow drift over the whole run is not a transition).
MIN_TRANSITION_R2 = 0.5
MIN_TRANSITION_SNR = 4.0
MAX_TRANSITION_WIDTH = 0.25
BOOTSTRAP_SAMPLES = 200
BOOTSTRAP_SEED = 0
# Fewer points than this where both series are observed: no blog-form fit.
MIN_OVERLAP = 5


@dataclass
class LogisticFit:
    """``base + sign·delta·σ((t − centre)/width)`` fitted to one series (sign −1 for a fall)."""

    base: float
    delta: float
    centre: float
    width: float
    r2: float
    rising: bool
    resid_std: float
    span: float

    def to_dict(self) -> dict[str, Any]:
        """The fit's parameters (base, delta in the series' units; centre, width in steps) and R²."""
        return {"base": round(self.base, 6), "delta": round(self.delta, 6),
                "centre": round(self.centre, 2), "width": round(self.width, 2),
                "r2": round(self.r2, 4)}

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """The fitted curve at steps ``t`` (the series' units)."""
        sign = 1.0 if self.rising else -1.0
        return self.base + sign * self.delta * expit((np.asarray(t, float) - self.centre) / self.width)


def _logistic(sign: float):
    def f(t, base, delta, centre, width):
        return base + sign * delta * expit((t - centre) / width)
    return f


def fit_logistic(steps: np.ndarray, values: np.ndarray, *, rising: bool,
                 start: LogisticFit | None = None) -> LogisticFit | None:
    """Least-squares logistic (scipy ``curve_fit``, bounded); ``None`` if it cannot be fitted.

    Fitted in standardised units (steps to [0, 1], values to zero mean and unit std) from a fixed
    grid of starting points (or from ``start`` alone), keeping the lowest squared error: the
    result depends on the data only.
    """
    t = np.asarray(steps, float)
    y = np.asarray(values, float)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if len(t) < 5 or np.ptp(t) <= 0:
        return None
    y_mean, y_std = float(y.mean()), float(y.std())
    if y_std < 1e-12:
        return None  # a constant series has no transition to fit
    t0, span = float(t[0]), float(np.ptp(t))
    u, z = (t - t0) / span, (y - y_mean) / y_std
    spacing = float(np.median(np.diff(np.unique(u))))
    w_min = max(spacing / 4, 1e-4)
    sign = 1.0 if rising else -1.0
    f = _logistic(sign)
    # base and delta free within generous limits; the centre inside the observed steps
    lower = [z.min() - 2 * np.ptp(z), 0.0, 0.0, w_min]
    upper = [z.max() + 2 * np.ptp(z), 4 * np.ptp(z) + 1e-9, 1.0, 1.0]
    if start is not None:
        starts = [((start.base - y_mean) / y_std, start.delta / y_std,
                   (start.centre - t0) / span, start.width / span)]
    else:
        lo, hi = (z.min(), z.max()) if rising else (z.max(), z.min())
        starts = [(lo, abs(hi - lo), c, w) for c in np.linspace(0.05, 0.95, 10)
                  for w in (max(0.02, w_min), 0.1)]
    best, best_sse = None, np.inf
    for p0 in starts:
        p0 = np.clip(p0, lower, upper)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(f, u, z, p0=p0, bounds=(lower, upper), maxfev=2000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((f(u, *params) - z) ** 2))
        if sse < best_sse - 1e-12:
            best, best_sse = params, sse
    if best is None:
        return None
    sst = float(np.sum(z ** 2))
    base, delta, centre, width = best
    dof = max(len(z) - 4, 1)
    return LogisticFit(base=float(base * y_std + y_mean), delta=float(delta * y_std),
                       centre=float(centre * span + t0), width=float(width * span),
                       r2=float(1 - best_sse / sst), rising=rising,
                       resid_std=float(np.sqrt(best_sse / dof) * y_std), span=span)


def is_transition(fit: LogisticFit | None, steps: np.ndarray) -> bool:
    """Whether a fitted logistic is a transition: it explains the series
    (``R² ≥ MIN_TRANSITION_R2``), its step stands out of the residual noise
    (``Δ ≥ MIN_TRANSITION_SNR × residual std``), it is not a run-long drift
    (``w ≤ MAX_TRANSITION_WIDTH × span``) and its centre has two evaluations on each side."""
    if fit is None:
        return False
    steps = np.asarray(steps, float)
    # bool(): the numpy comparisons give np.bool_, not the bool annotated (and json cannot write it)
    return bool(fit.r2 >= MIN_TRANSITION_R2
                and fit.delta >= MIN_TRANSITION_SNR * max(fit.resid_std, 1e-12)
                and fit.width <= MAX_TRANSITION_WIDTH * fit.span
                and len(steps) >= 5 and steps[1] < fit.centre < steps[-2])


def blog_form_r2(steps: np.ndarray, loss: np.ndarray, score: np.ndarray,
                 tau: float) -> float | None:
    """``R²`` of ``loss(t) ≈ a − b·score(t + τ)`` (``b ≥ 0``, least squares), on the evaluated
    steps ``t`` with ``t + τ`` inside the evaluated range (``score`` linearly interpolated between
    evaluations, never extrapolated). ``None`` with fewer than ``MIN_OVERLAP`` such steps or a flat
    shifted score."""
    steps = np.asarray(steps, float)
    keep = (steps + tau >= steps[0]) & (steps + tau <= steps[-1])
    if keep.sum() < MIN_OVERLAP:
        return None
    shifted = np.interp(steps[keep] + tau, steps, np.asarray(score, float))
    y = np.asarray(loss, float)[keep]
    if np.ptp(shifted) < 1e-12 or np.ptp(y) < 1e-12:
        return None
    r = float(np.corrcoef(shifted, y)[0, 1])
    # constrained to b ≥ 0 ("more score, less loss"): a wrong-signed slope is best replaced by
    # b = 0, which explains none of the variance
    return r * r if r < 0 else 0.0


@dataclass
class Lag:
    """The blog's lag between a head's prefix-matching score and the in-context loss."""

    steps: float | None
    ci95: tuple[float, float] | None
    r2: float | None
    r2_score_fit: float | None
    r2_loss_fit: float | None
    null_r2: float | None
    null_r2_median: float | None
    n_null_heads: int
    score_onset_step: float | None
    loss_onset_step: float | None
    method: str
    score_fit: LogisticFit | None = None  # the strongest head's, when it has an onset
    loss_fit: LogisticFit | None = None

    def to_dict(self) -> dict[str, Any]:
        """The lag τ (steps), its 95% interval, the R² values and both fits as a JSON-ready dict."""
        return {"steps": _round(self.steps, 1),
                "ci95": None if self.ci95 is None else [_round(x, 1) for x in self.ci95],
                "r2": _round(self.r2, 4), "r2_score_fit": _round(self.r2_score_fit, 4),
                "r2_loss_fit": _round(self.r2_loss_fit, 4), "null_r2": _round(self.null_r2, 4),
                "null_r2_median": _round(self.null_r2_median, 4),
                "n_null_heads": self.n_null_heads,
                "score_onset_step": _round(self.score_onset_step, 1),
                "loss_onset_step": _round(self.loss_onset_step, 1), "method": self.method,
                "score_fit": None if self.score_fit is None else self.score_fit.to_dict(),
                "loss_fit": None if self.loss_fit is None else self.loss_fit.to_dict()}


LAG_METHOD = (f"τ = t_s − t_ℓ: centres of logistics fitted (scipy curve_fit) to the head's "
              f"prefix-matching score and to the in-context loss; ci95: percentile interval of a "
              f"residual bootstrap of both fits ({BOOTSTRAP_SAMPLES} resamples, seed "
              f"{BOOTSTRAP_SEED}); r2: blog form ℓ(t) ≈ a − b·s(t + τ), b ≥ 0, on the evaluated "
              f"steps where s(t + τ) is observed (linear interpolation, no extrapolation); "
              f"null_r2: the largest r2 of that fit, at the same τ, over the heads whose "
              f"prefix-matching never reaches {INDUCTION_THRESHOLD} (null_r2_median: their median)")


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(float(x), digits)


def bootstrap_lag(steps: np.ndarray, score_fit: LogisticFit, loss_fit: LogisticFit,
                  score: np.ndarray, loss: np.ndarray, *, n: int = BOOTSTRAP_SAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> tuple[tuple[float, float] | None, int]:
    """95% percentile interval of ``τ`` (steps) from a residual bootstrap, and how many resamples
    gave two fits. Residuals are resampled with replacement onto each fitted curve, keeping the
    evaluation steps (so irregular spacing is preserved); this assumes exchangeable residuals and
    understates the spread when they are autocorrelated."""
    rng = np.random.default_rng(seed)
    s_hat, l_hat = score_fit(steps), loss_fit(steps)
    s_res, l_res = np.asarray(score, float) - s_hat, np.asarray(loss, float) - l_hat
    taus = []
    for _ in range(n):
        s_star = s_hat + rng.choice(s_res, size=len(s_res), replace=True)
        l_star = l_hat + rng.choice(l_res, size=len(l_res), replace=True)
        fs = fit_logistic(steps, s_star, rising=True, start=score_fit)
        fl = fit_logistic(steps, l_star, rising=False, start=loss_fit)
        if fs is not None and fl is not None:
            taus.append(fs.centre - fl.centre)
    if len(taus) < 0.8 * n:
        return None, len(taus)
    lo, hi = np.percentile(taus, [2.5, 97.5])
    return (float(lo), float(hi)), len(taus)


@dataclass
class HeadDynamics:
    """One head's prefix-matching trajectory summary: final and peak scores, onset and lag (steps)."""

    layer: int
    head: int
    final_prefix_matching: float
    final_previous_token: float
    max_prefix_matching: float
    onset_step: int | None
    lag_steps: float | None
    r2: float | None
    r2_score_fit: float | None

    @property
    def is_induction(self) -> bool:
        """True when the head's peak prefix-matching score reaches ``INDUCTION_THRESHOLD``."""
        return self.max_prefix_matching >= INDUCTION_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        """The head's summary as a JSON-ready dict (scores in [0, 1], steps, R²)."""
        return {"layer": self.layer, "head": self.head, "label": head_label(self.layer, self.head),
                "final_prefix_matching": self.final_prefix_matching,
                "final_previous_token": self.final_previous_token,
                "max_prefix_matching": self.max_prefix_matching,
                "induction_head": self.is_induction, "onset_step": self.onset_step,
                "lag": {"steps": _round(self.lag_steps, 1), "r2": _round(self.r2, 4),
                        "r2_score_fit": _round(self.r2_score_fit, 4)}}


@dataclass
class Dynamics:
    """What a run's metrics say about induction formation: phase change, onsets and lag (steps)."""

    steps: np.ndarray
    phase_start: int | None
    phase_end: int | None
    phase_peak: int | None
    induction_onset_step: int | None
    loss_drop_step: int | None
    lag: Lag
    strongest_head: tuple[int, int]
    icl_score_source: str = ""
    icl_windows: dict[str, list[int]] | None = None
    heads: list[HeadDynamics] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stages: dict[str, Any] | None = None  # the run's saved `induct stages` result, if any
    musat_proxies: dict[str, Any] | None = None  # 2-layer runs: musat.proxies.proxy_dynamics

    @property
    def lag_steps(self) -> float | None:
        """The lag τ between the strongest head's score rise and the loss drop (steps), or None."""
        return self.lag.steps

    @property
    def lag_r2(self) -> float | None:
        """R² of the blog-form fit of the loss on the shifted score, or None."""
        return self.lag.r2

    def to_dict(self) -> dict[str, Any]:
        """The analysis as a JSON-ready dict (steps, scores in [0, 1], losses in nats)."""
        return {
            "phase_change": {"start_step": self.phase_start, "end_step": self.phase_end,
                             "steepest_step": self.phase_peak},
            "induction_onset_step": self.induction_onset_step,
            "loss_drop_step": self.loss_drop_step,
            "lag": self.lag.to_dict(),
            "strongest_head": {"layer": self.strongest_head[0], "head": self.strongest_head[1],
                               "label": head_label(*self.strongest_head)},
            "icl_score_source": self.icl_score_source,
            "icl_windows": self.icl_windows,
            "heads": [h.to_dict() for h in self.heads],
            "n_evals": int(len(self.steps)),
            "eval_spacing": {"median_steps": float(np.median(np.diff(self.steps))),
                             "max_steps": float(np.max(np.diff(self.steps)))},
            "notes": list(self.notes),
            **({"stage_boundaries": self.stages["boundaries"]} if self.stages else {}),
            "musat_proxies": self.musat_proxies,
        }


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """``values`` smoothed by a Gaussian of ``sigma`` evaluations (unchanged for ``sigma`` 0)."""
    return gaussian_filter1d(np.asarray(values, dtype=float), sigma, mode="nearest") if sigma > 0 \
        else np.asarray(values, dtype=float)


def phase_change_window(steps: np.ndarray, icl: np.ndarray, *,
                        sigma: float = 1.0) -> tuple[int, int, int] | None:
    """(start, end, steepest) step of the window where the smoothed dICL/dstep is most negative;
    ``None`` when the ICL score never falls."""
    d = np.gradient(smooth(icl, sigma), steps)
    peak = int(np.argmin(d))
    if not d[peak] < 0:
        return None
    below = d <= d[peak] / 2
    lo = hi = peak
    while lo > 0 and below[lo - 1]:
        lo -= 1
    while hi < len(d) - 1 and below[hi + 1]:
        hi += 1
    return int(steps[lo]), int(steps[hi]), int(steps[peak])


def loss_drop_step(steps: np.ndarray, loss: np.ndarray, *, sigma: float = 1.0) -> int | None:
    """First step (int) at which the smoothed loss falls to the midpoint of its first and last
    values; ``None`` when it ends no lower than it started."""
    s = smooth(loss, sigma)
    if not s[-1] < s[0]:
        return None
    hit = np.nonzero(s <= (s[0] + s[-1]) / 2)[0]
    return int(steps[hit[0]])


def _icl_series(rows: list[dict[str, Any]], notes: list[str]) -> tuple[np.ndarray, str,
                                                                        dict | None]:
    if all("icl_windows" in r for r in rows):
        w = rows[-1]["icl_windows"]
        source = (f"held-out samples of the training distribution (the task's own sample, fixed "
                  f"seed): mean loss on tokens {w['late'][0]}–{w['late'][1]} minus tokens "
                  f"{w['early'][0]}–{w['early'][1]}")
        return np.array([r["icl_score"] for r in rows], float), source, w
    notes.append("a run written before the ICL score moved to held-out samples: "
                 "loss_repeated_half includes the second copy's first token, which no induction "
                 "head can predict")
    if all("icl_score" in r for r in rows):
        notes.append("ICL score read from the old icl_score (the task's fixed eval batch, one late "
                     "token minus one early token); score_icl (measured on the scoring "
                     "sequences) is not used")
        return (np.array([r["icl_score"] for r in rows], float),
                "the task's fixed eval batch, one late token minus one early token (old run)", None)
    if all("score_icl" in r for r in rows):
        notes.append("ICL score read from score_icl, measured on the scoring sequences: the phase "
                     "change then coincides with the induction loss by construction")
        return (np.array([r["score_icl"] for r in rows], float),
                "the scoring sequences (repeated random tokens; old run)", None)
    raise ConfigError("the metrics rows hold no ICL score (icl_score or score_icl)")


def analyse(rows: list[dict[str, Any]], *, sigma: float = 1.0, task: str | None = None,
            bootstrap: int = BOOTSTRAP_SAMPLES) -> Dynamics:
    """Dynamics of a run from its metrics rows (as read from ``metrics.jsonl``); ``task`` is the
    training task's name, if known (noted when it is itself repeated tokens)."""
    rows = sorted((r for r in rows if r.get("prefix_matching") is not None), key=lambda r: r["step"])
    if len(rows) < 3:
        raise ConfigError(f"need at least 3 evaluations to analyse dynamics, got {len(rows)}; "
                          "train longer or lower --eval-every")
    notes: list[str] = []
    steps = np.array([r["step"] for r in rows], dtype=float)
    icl, source, windows = _icl_series(rows, notes)
    if task in ("repeated", "copying"):
        notes.append(f"the training task ({task}) is itself repeated tokens: its ICL score is "
                     "in-context learning of repeats, which an induction head provides, so the "
                     "phase change and the induction loss move together by the nature of the task")
    rep = np.array([r.get("loss_repeated_half", r["eval_loss"]) for r in rows], dtype=float)
    pm = np.array([r["prefix_matching"] for r in rows], dtype=float)  # [T, layer, head]
    pt = np.array([r["previous_token"] for r in rows], dtype=float)
    window = phase_change_window(steps, icl, sigma=sigma)
    if window is None:
        notes.append("the ICL score never falls: no phase change")
    if np.max(np.diff(steps)) > 10:
        notes.append(f"evaluations up to {np.max(np.diff(steps)):.0f} steps apart: a transition "
                     "narrower than a few evaluations is not resolved (evaluate every ≤ 10 steps)")

    loss_fit = fit_logistic(steps, rep, rising=False)
    loss_ok = is_transition(loss_fit, steps)
    if not loss_ok:
        notes.append("the in-context loss shows no logistic drop: no loss onset, no lag")
    heads: list[HeadDynamics] = []
    fits: dict[tuple[int, int], LogisticFit | None] = {}
    for layer in range(pm.shape[1]):
        for head in range(pm.shape[2]):
            s = pm[:, layer, head]
            fit = fit_logistic(steps, s, rising=True) if np.max(s) >= INDUCTION_THRESHOLD else None
            fits[layer, head] = fit
            onset = int(round(fit.centre)) if is_transition(fit, steps) else None
            tau = fit.centre - loss_fit.centre if onset is not None and loss_ok else None
            heads.append(HeadDynamics(layer, head, float(s[-1]), float(pt[-1, layer, head]),
                                      float(np.max(s)), onset, tau, None,
                                      None if fit is None else fit.r2))
    with_onset = [h for h in heads if h.onset_step is not None]
    strongest = max(with_onset or heads, key=lambda h: h.final_prefix_matching)
    if not with_onset:
        notes.append(f"no head's prefix-matching score rises through {INDUCTION_THRESHOLD} in a "
                     "logistic transition: no induction onset")
    run_tau = strongest.lag_steps
    nulls = [h for h in heads if not h.is_induction]
    for h in heads:
        tau = h.lag_steps if h.lag_steps is not None else run_tau
        if tau is not None:
            h.r2 = blog_form_r2(steps, rep, pm[:, h.layer, h.head], tau)
    null_r2s = [h.r2 for h in nulls if h.r2 is not None]
    ci = None
    if run_tau is not None:
        ci, n_ok = bootstrap_lag(steps, fits[strongest.layer, strongest.head], loss_fit,
                                 pm[:, strongest.layer, strongest.head], rep, n=bootstrap)
        if ci is None:
            notes.append(f"bootstrap: only {n_ok} of {bootstrap} resamples gave two fits; no "
                         "interval")
        if not nulls:
            notes.append("every head becomes an induction head: no null heads for the lag's R²")
    score_fit = fits[strongest.layer, strongest.head]
    lag = Lag(steps=run_tau, ci95=ci, r2=strongest.r2 if run_tau is not None else None,
              r2_score_fit=None if score_fit is None else score_fit.r2,
              r2_loss_fit=None if loss_fit is None else loss_fit.r2,
              null_r2=max(null_r2s) if null_r2s else None,
              null_r2_median=float(np.median(null_r2s)) if null_r2s else None,
              n_null_heads=len(null_r2s),
              score_onset_step=score_fit.centre if strongest.onset_step is not None else None,
              loss_onset_step=loss_fit.centre if loss_ok else None, method=LAG_METHOD,
              score_fit=score_fit if strongest.onset_step is not None else None,
              loss_fit=loss_fit if loss_ok else None)
    start, end, peak = window if window is not None else (None, None, None)
    return Dynamics(steps=steps, phase_start=start, phase_end=end, phase_peak=peak,
                    induction_onset_step=strongest.onset_step,
                    loss_drop_step=loss_drop_step(steps, rep, sigma=sigma), lag=lag,
                    strongest_head=(strongest.layer, strongest.head), icl_score_source=source,
                    icl_windows=windows, heads=heads, notes=notes)


def run_dynamics(run_dir: str | Path, *, sigma: float = 1.0) -> Dynamics:
    """Dynamics of the training run in ``run_dir`` (its config and ``metrics.jsonl``)."""
    from .run_dir import read_metrics, read_run_config

    config = read_run_config(run_dir)
    rows = read_metrics(run_dir)
    dyn = analyse(rows, sigma=sigma, task=(config.get("task") or {}).get("name"))
    dyn.notes.extend(getattr(rows, "notes", []))
    from .run_dir import read_stages

    dyn.stages = read_stages(run_dir)
    from .musat.proxies import proxy_dynamics

    dyn.musat_proxies = proxy_dynamics(list(rows), run_dir)
    return dyn
