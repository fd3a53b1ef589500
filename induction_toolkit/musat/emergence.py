"""Emergence steps (threshold crossings), their order, and the log-log fit ``log t = p log N + c``."""

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

KEY_PARAMS = ("gamma3", "beta2", "alpha3")  # the theorem's order of emergence


def crossing_step(steps: Sequence[int], values: Sequence[float], threshold: float) -> float | None:
    """First step the value reaches ``threshold``, linearly interpolated between records (None: never)."""
    for i, (s, v) in enumerate(zip(steps, values)):
        if v >= threshold:
            if i == 0:
                return float(s)
            s0, v0 = steps[i - 1], values[i - 1]
            return float(s0 + (threshold - v0) / (v - v0) * (s - s0))
    return None


def crossings(steps: Sequence[int], params: dict[str, Sequence[float]], threshold: float
              ) -> dict[str, float | None]:
    """``crossing_step`` of α₃, β₂, γ₃."""
    return {k: crossing_step(steps, params[k], threshold) for k in KEY_PARAMS}


def order(cross: dict[str, float | None]) -> list[str]:
    """The pseudo-parameters sorted by crossing step (those that never cross last, in key order)."""
    return sorted(cross, key=lambda k: (cross[k] is None, cross[k] if cross[k] is not None else 0.0))


def emergence_step(cross: dict[str, float | None]) -> float | None:
    """When the induction head has emerged: the last of α₃, β₂, γ₃ to cross (None if one never does)."""
    vals = list(cross.values())
    return None if any(v is None for v in vals) else max(vals)


def fit_exponent(ns: Sequence[int], ts: Sequence[float], *, n_boot: int = 2000, seed: int = 0
                 ) -> dict[str, float | list[float] | None]:
    """Least-squares ``log t = p log N + c`` with a bootstrap 95% interval for ``p``.

    The bootstrap resamples seeds within each ``N`` (stratified) when every ``N`` has at least two
    points, else residuals. Also returned: the t-based interval and the p-value against the null
    ``p = 0`` (no dependence on ``N``). Fewer than 2 distinct ``N``: every value None.
    """
    ns_a, ts_a = np.asarray(ns, float), np.asarray(ts, float)
    keep = np.isfinite(ts_a) & (ts_a > 0)
    ns_a, ts_a = ns_a[keep], ts_a[keep]
    empty = {"exponent": None, "ci95": None, "r2": None, "intercept": None, "ci95_t": None,
             "p_value_null_zero": None, "n_points": int(keep.sum())}
    if len(np.unique(ns_a)) < 2:
        return empty
    x, y = np.log(ns_a), np.log(ts_a)
    fit = stats.linregress(x, y)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(ns_a == n) for n in np.unique(ns_a)]
    stratified = all(len(g) >= 2 for g in groups)
    resid = y - (fit.intercept + fit.slope * x)
    boot = []
    for _ in range(n_boot):
        if stratified:
            idx = np.concatenate([rng.choice(g, len(g)) for g in groups])
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, fit.intercept + fit.slope * x + rng.choice(resid, len(resid))
        boot.append(stats.linregress(xb, yb).slope if np.ptp(xb) > 0 else np.nan)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    dof = len(x) - 2
    half = float(stats.t.ppf(0.975, dof) * fit.stderr) if dof > 0 else math.nan
    return {"exponent": float(fit.slope), "ci95": [float(lo), float(hi)], "r2": float(fit.rvalue ** 2),
            "intercept": float(fit.intercept),
            "ci95_t": [float(fit.slope - half), float(fit.slope + half)] if dof > 0 else None,
            "p_value_null_zero": float(fit.pvalue) if dof > 0 else None,
            "n_points": int(len(x)), "bootstrap": "stratified by N" if stratified else "residual"}
