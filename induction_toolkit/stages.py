"""Developmental stages of a training run from the local learning coefficient (LLC).

Hoogland et al. 2024 ("The developmental landscape of in-context learning") estimate the LLC
λ̂(w) at every checkpoint with SGLD and place stage boundaries at the critical points of the
(smoothed) λ̂ curve; in a 2-layer attention-only language model previous-token heads form in one
stage and induction heads in the next. This module does the same on a run directory:

- **estimator** (Lau et al. 2023, as devinterp implements it): sample w from the localized tempered
  posterior ``∝ exp(−nβ·L_n(w) − γ/2·|w − w*|²)`` with SGLD started at the checkpoint w*, then
  ``λ̂ = nβ · (E[L_n(w)] − L_n(w*))``. The SGLD chains are devinterp's own
  (``devinterp.slt.llc.llc``, sampler ``sgmcmc_sgld``); L is the mean next-token cross-entropy
  (nats) on held-out sequences of the run's own training task, computed by the fused forward.
  Every sampler setting is reported (``SamplerSettings``) because λ̂ depends on them: compare
  λ̂ across checkpoints of one run at fixed settings, not across settings;
- **spread**: each chain gives one λ̂; ``std`` is the standard deviation over chains;
- **calibration**: per checkpoint, the loss trace of the chains is checked for (a) a negative
  λ̂ (the checkpoint is not a local minimum at this temperature, or the step is too large),
  (b) a trace still drifting at the end (the chain has not equilibrated: more draws or a larger
  step) and (c) an escape (the sampled loss rising far above the checkpoint's: step too large or
  localization too weak); a known-answer test checks the estimator (tests/test_stages.py:
  loss exactly quadratic in k directions and flat in the rest, λ = k/2);
- **stages**: λ̂ is smoothed with a Gaussian over checkpoints (index space: checkpoints are
  log-spaced early, as the developmental-interpretability papers space them) and a boundary is
  placed at every critical point of the smoothed curve, located where the slope changes sign
  (linearly interpolated between the two checkpoints).

devinterp is an optional extra (``pip install 'induction-toolkit[stages]'``), imported only here.
Guide: docs/interventions.md (section "Developmental stages").
"""

import contextlib
import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

from .errors import ConfigError

DRIFT_TOLERANCE = 0.1  # a chain's last-half mean loss may drift by this fraction of λ̂/nβ
ESCAPE_NATS = 1.0  # sampled loss this far above the checkpoint's: the chain left the basin


@dataclass
class SamplerSettings:
    """SGLD settings (devinterp's names): step ``lr`` (ε), inverse temperature ``n_beta`` (nβ),
    ``localization`` (γ), chains, draws per chain, burn-in steps, sequences per SGLD batch, the
    number of held-out sequences sampled from, and the seeds."""

    lr: float = 3e-5
    n_beta: float = 300.0
    localization: float = 3000.0
    num_chains: int = 2
    num_draws: int = 60
    num_burnin_steps: int = 0
    batch_size: int = 16
    n_sequences: int = 256
    data_seed: int = 2**31 - 3
    init_seed: int = 100

    def __post_init__(self) -> None:
        for name in ("lr", "n_beta"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"sampler {name} must be > 0, got {getattr(self, name)}")
        if self.localization < 0 or self.num_burnin_steps < 0:
            raise ConfigError("sampler localization and burn-in must be ≥ 0")
        for name in ("num_chains", "num_draws", "batch_size", "n_sequences"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sampler {name} must be ≥ 1, got {getattr(self, name)}")
        if self.num_chains < 2:
            raise ConfigError("the chain spread needs at least 2 chains")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, with the sampler's name."""
        return {"method": "devinterp.slt.llc.llc (sgmcmc_sgld)", **asdict(self)}


@dataclass
class LLCEstimate:
    """One checkpoint's λ̂: mean and std over chains, each chain's value, the checkpoint's loss
    (nats), each chain's mean loss per SGLD step, and the calibration problems found."""

    mean: float
    std: float
    per_chain: list[float]
    init_loss: float
    trace: np.ndarray  # [chain, step]
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _import_devinterp():
    try:
        from devinterp.slt.llc import llc
    except ImportError as exc:
        raise ConfigError("induct stages needs devinterp: pip install 'induction-toolkit[stages]'"
                          f" ({exc})") from None
    return llc


def lm_per_token_loss(model, input_ids: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos_minus_1"]:
    """Per-token next-token cross-entropy (nats), the fused forward where it applies."""
    from .fast_forward import can_fuse, fused_logits

    logits = fused_logits(model, input_ids) if can_fuse(model) else model(input_ids, return_type="logits")
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, input_ids[:, 1:, None])[..., 0]


def estimate_llc(model: torch.nn.Module, tokens: Int[torch.Tensor, "n pos"],
                 settings: SamplerSettings,
                 loss_fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None) -> LLCEstimate:
    """λ̂ at ``model``'s weights with devinterp's SGLD sampler on ``tokens``.

    ``loss_fn(model, input_ids)`` returns the per-token loss ``[batch, pos − 1]`` (default:
    next-token cross-entropy). Every chain starts at the model's weights; the model is not changed.
    """
    llc = _import_devinterp()
    dataset = [{"input_ids": t} for t in tokens.cpu()]
    if len(dataset) < settings.batch_size:
        raise ConfigError(f"{len(dataset)} sequences cannot fill an SGLD batch of "
                          f"{settings.batch_size}")
    t0 = time.perf_counter()
    with warnings.catch_warnings(), _quiet_chains():
        # devinterp warns about its temp-dir output and about the deprecated SGLD class
        warnings.simplefilter("ignore")
        result = llc(model, dataset, {}, lr=settings.lr, n_beta=settings.n_beta,
                     localization=settings.localization, num_chains=settings.num_chains,
                     num_draws=settings.num_draws, num_burnin_steps=settings.num_burnin_steps,
                     batch_size=settings.batch_size,
                     num_init_loss_batches=max(1, len(dataset) // settings.batch_size),
                     init_seed=settings.init_seed, device="cpu",
                     loss_fn=loss_fn or lm_per_token_loss)
    per_chain = [float(x) for x in result.llc_per_chain.values]
    trace = np.asarray(result.loss_trace.values, dtype=float)
    init = float(result.init_loss)
    est = LLCEstimate(mean=float(np.mean(per_chain)), std=float(np.std(per_chain, ddof=1)),
                      per_chain=per_chain, init_loss=init, trace=trace,
                      seconds=time.perf_counter() - t0)
    est.problems = calibration_problems(est, settings)
    return est


@contextlib.contextmanager
def _quiet_chains():
    """devinterp draws one tqdm bar per chain; ``induct stages`` shows its own progress."""
    import devinterp.slt.sampler as sampler
    from tqdm.auto import trange

    original = sampler.trange
    sampler.trange = functools.partial(trange, disable=True)
    try:
        yield
    finally:
        sampler.trange = original


def calibration_problems(est: LLCEstimate, settings: SamplerSettings) -> list[str]:
    """What the chains' loss traces say is wrong with the sampler settings (empty: nothing)."""
    problems = []
    if not np.all(np.isfinite(est.trace)):
        return ["a chain diverged (non-finite loss): lower lr"]
    if min(est.per_chain) < 0:
        problems.append("negative λ̂ on a chain: the checkpoint is not a local minimum at this "
                        "temperature, or lr is too large")
    if np.max(est.trace) - est.init_loss > ESCAPE_NATS:
        problems.append(f"sampled loss rose more than {ESCAPE_NATS} nats above the checkpoint's: "
                        "the chain left the basin (lower lr or raise localization)")
    n = est.trace.shape[1]
    if n >= 8:
        q2 = est.trace[:, n // 4: n // 2].mean()
        q4 = est.trace[:, 3 * n // 4:].mean()
        rise = max(est.mean, 1e-9) / settings.n_beta  # E[L] − L(w*) in nats
        if abs(q4 - q2) > DRIFT_TOLERANCE * rise * 4:
            problems.append(f"the loss trace still drifts ({q2:.4f} → {q4:.4f} nats from the 2nd "
                            "to the 4th quarter of the draws): not equilibrated")
    return problems


def smooth_llc(values: np.ndarray, sigma: float) -> np.ndarray:
    """λ̂ smoothed by a Gaussian of ``sigma`` checkpoints (unchanged for ``sigma`` 0)."""
    from .dynamics import smooth

    return smooth(values, sigma)


def critical_points(steps: np.ndarray, values: np.ndarray) -> list[int]:
    """Steps where the slope of ``values`` changes sign, interpolated between checkpoints."""
    steps = np.asarray(steps, dtype=float)
    d = np.diff(np.asarray(values, dtype=float))  # slope between consecutive checkpoints
    out = []
    for i in range(len(d) - 1):
        if d[i] == 0 or np.sign(d[i]) == np.sign(d[i + 1]):
            continue
        # d[i] is the slope at the midpoint of (steps[i], steps[i+1]); zero crossing between
        mid_a, mid_b = (steps[i] + steps[i + 1]) / 2, (steps[i + 1] + steps[i + 2]) / 2
        frac = d[i] / (d[i] - d[i + 1])
        out.append(int(round(mid_a + frac * (mid_b - mid_a))))
    return out


@dataclass
class Stages:
    """λ̂ per checkpoint, its smoothed curve, the stage boundaries (steps), settings and notes."""

    steps: list[int]
    estimates: list[LLCEstimate]
    smoothed: list[float]
    boundaries: list[int]
    settings: SamplerSettings
    sigma: float
    notes: list[str] = field(default_factory=list)
    phase_change: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``induct stages --json`` document (``llc``, ``boundaries``, ``sampler``, ``notes``)."""
        spreads = [e.std for e in self.estimates]
        return {
            "llc": [{"step": s, "mean": round(e.mean, 4), "std": round(e.std, 4),
                     "per_chain": [round(x, 4) for x in e.per_chain],
                     "init_loss": round(e.init_loss, 5), "problems": e.problems}
                    for s, e in zip(self.steps, self.estimates)],
            "smoothed": [round(x, 4) for x in self.smoothed],
            "boundaries": self.boundaries,
            "sampler": {**self.settings.to_dict(), "smoothing_sigma_checkpoints": self.sigma,
                        "calibration": {
                            "checkpoints_with_problems": sum(bool(e.problems) for e in self.estimates),
                            "median_chain_std": round(float(np.median(spreads)), 4),
                            "max_chain_std": round(float(np.max(spreads)), 4)},
                        "seconds": round(self.seconds, 1)},
            "phase_change": self.phase_change,
            "boundaries_in_phase_change": self.in_phase_change(),
            "notes": list(self.notes),
        }

    def in_phase_change(self) -> list[int] | None:
        """Boundaries inside the run's phase-change window (None when it has none)."""
        pc = self.phase_change or {}
        if pc.get("start_step") is None:
            return None
        return [b for b in self.boundaries if pc["start_step"] <= b <= pc["end_step"]]


def heldout_tokens(run_dir: str | Path, n: int, seed: int) -> torch.Tensor:
    """``n`` sequences of the run's own training task, from a seed no training batch uses."""
    from .run_dir import read_run_config
    from .tasks.base import heldout_sample
    from .training.config import TrainConfig
    from .training.loop import build_task

    task = build_task(TrainConfig.from_dict(read_run_config(run_dir)["train"]))
    return heldout_sample(task, n, seed)


def run_stages(run_dir: str | Path, settings: SamplerSettings | None = None, *,
               sigma: float = 1.0, steps: list[int] | None = None,
               progress: Callable[[int, int, int], None] | None = None) -> Stages:
    """λ̂ at every checkpoint of ``run_dir`` (or at ``steps``), smoothed, with stage boundaries.

    ``progress(done, total, step)`` is called after each checkpoint.
    """
    from .checkpoints import load_model
    from .run_dir import list_checkpoints

    settings = settings or SamplerSettings()
    if sigma < 0:
        raise ConfigError(f"sigma must be ≥ 0, got {sigma}")
    ckpts = list_checkpoints(run_dir)
    if steps is not None:
        missing = sorted(set(steps) - set(ckpts))
        if missing:
            raise ConfigError(f"run {run_dir} has no checkpoints at steps {missing}")
        ckpts = {s: ckpts[s] for s in sorted(set(steps))}
    if len(ckpts) < 3:
        raise ConfigError(f"need at least 3 checkpoints for stages, {run_dir} has {len(ckpts)}")
    run_notes: list[str] = []
    phase = _phase_change(run_dir, run_notes)  # before sampling: a damaged run fails in seconds
    tokens = heldout_tokens(run_dir, settings.n_sequences, settings.data_seed)
    t0 = time.perf_counter()
    estimates = []
    for i, (step, path) in enumerate(ckpts.items()):
        model = load_model(path, device="cpu").model
        estimates.append(estimate_llc(model, tokens, settings))
        if progress is not None:
            progress(i + 1, len(ckpts), step)
    step_list = list(ckpts)
    smoothed = smooth_llc(np.array([e.mean for e in estimates]), sigma)
    boundaries = critical_points(np.array(step_list), smoothed)
    notes = [f"λ̂ = nβ·(E[L] − L(w*)) with devinterp's SGLD ({settings.num_chains} chains × "
             f"{settings.num_draws} draws, ε={settings.lr:g}, nβ={settings.n_beta:g}, "
             f"γ={settings.localization:g}); std is over chains; λ̂ depends on these settings, "
             "so compare checkpoints of one run at fixed settings",
             f"boundaries: critical points of λ̂ smoothed over {sigma:g} checkpoints; resolution "
             "is the checkpoint spacing"]
    bad = [f"step {s}: {p}" for s, e in zip(step_list, estimates) for p in e.problems]
    notes += [f"calibration: {b}" for b in bad] + run_notes
    stages = Stages(step_list, estimates, [float(x) for x in smoothed], boundaries, settings,
                    sigma, notes, phase, time.perf_counter() - t0)
    if phase and phase.get("start_step") is not None and not stages.in_phase_change():
        near = _nearest_checkpoints(step_list, phase)
        stages.notes.append(
            f"no boundary inside the phase change (steps {phase['start_step']}–"
            f"{phase['end_step']}); checkpoints around it: {near}. A critical point can only be "
            "resolved between checkpoints: more checkpoints there (--log-checkpoints, "
            "--checkpoint-every) or --steps of this command resolve it")
    return stages


def _nearest_checkpoints(steps: list[int], phase: dict[str, Any]) -> list[int]:
    lo, hi = phase["start_step"], phase["end_step"]
    before = [s for s in steps if s < lo][-1:]
    after = [s for s in steps if s > hi][:1]
    return before + [s for s in steps if lo <= s <= hi] + after


def _phase_change(run_dir, notes: list[str]) -> dict[str, Any] | None:
    from .dynamics import run_dynamics
    from .errors import InductionToolkitError, RunDirError

    try:
        d = run_dynamics(run_dir)
    except RunDirError:
        raise  # a damaged run directory is an error, not a run without a phase change
    except InductionToolkitError as exc:
        notes.append(f"no phase-change window: {exc}")
        return None
    notes.extend(d.notes)  # e.g. a torn last metrics line, left out
    return {"start_step": d.phase_start, "end_step": d.phase_end, "steepest_step": d.phase_peak,
            "induction_onset_step": d.induction_onset_step}


def log_spaced(values: list[int], n: int) -> list[int]:
    """About ``n`` of ``values`` (sorted steps), evenly spaced in log(step + 1)."""
    values = sorted(values)
    if n >= len(values):
        return values
    targets = np.exp(np.linspace(0, math.log(values[-1] + 1), n)) - 1
    picked = {min(values, key=lambda v: abs(math.log(v + 1) - math.log(t + 1))) for t in targets}
    return sorted(picked)
