"""Zero-init gradient descent on the task, recording the 19 pseudo-parameters as it goes.

Plain gradient descent with a fixed learning rate (no momentum, no weight decay), each step on a
fresh batch (``population=True``: the enumerated population every step, exact for tiny ``N``).
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import NonFiniteLossError
from .basis import pseudo_params, residuals
from .model import MusatConfig, MusatWeights, forward_logits, targets, zero_weights
from .task import Batch, population, sample_batch


@dataclass
class TrainSettings:
    """Learning rate, batch size, step budget and how often to record."""

    lr: float = 0.5
    batch: int = 512
    max_steps: int = 20_000
    record_every: int = 10
    eval_batch: int = 1024
    population: bool = False
    dtype: str = "float64"  # float32 halves the step time; the symmetry residual's floor rises to ~1e-7
    stop_threshold: float | None = 0.5  # stop once α₃, β₂, γ₃ all passed it and accuracy jumped …
    stop_margin: float = 1.25  # … and this many times that step has run


@dataclass
class Trajectory:
    """One run: recorded steps, the 19 pseudo-parameters, loss, accuracy, flat weights, final weights."""

    cfg: MusatConfig
    seed: int
    settings: TrainSettings
    steps: list[int] = field(default_factory=list)
    params: dict[str, list[float]] = field(default_factory=dict)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    residual: list[float] = field(default_factory=list)
    symmetry_residual: list[float] = field(default_factory=list)
    flat: list[torch.Tensor] = field(default_factory=list)
    weights: MusatWeights | None = None
    wall_s: float = 0.0

    @property
    def accuracy_level(self) -> float:
        """Accuracy halfway between guessing among the N context labels and perfect."""
        return 0.5 * (1.0 + 1.0 / self.cfg.n_pairs)

    def accuracy_step(self) -> int | None:
        """First recorded step with accuracy at or above ``accuracy_level`` (None: never)."""
        return next((s for s, a in zip(self.steps, self.accuracy) if a >= self.accuracy_level), None)


def _eval(w: MusatWeights, batch: Batch) -> tuple[float, float]:
    with torch.no_grad():
        logits = forward_logits(w, batch)
        y = targets(batch)
        return (float(torch.nn.functional.cross_entropy(logits, y)),
                float((logits.argmax(-1) == y).double().mean()))


def train_musat(cfg: MusatConfig, seed: int, settings: TrainSettings | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> Trajectory:
    """Train from zero init; returns the recorded trajectory (deterministic given ``seed``)."""
    s = settings or TrainSettings()
    gen = torch.Generator().manual_seed(seed)
    eval_gen = torch.Generator().manual_seed(10_000 + seed)
    dtype = getattr(torch, s.dtype)
    pop = population(cfg.n_pairs, cfg.d_item, dtype) if s.population else None
    eval_batch = pop if pop is not None else sample_batch(cfg.n_pairs, cfg.d_item, s.eval_batch, eval_gen,
                                                         items=cfg.items, dtype=dtype)
    w = zero_weights(cfg, dtype)
    for t in w.tensors():
        t.requires_grad_(True)
    traj = Trajectory(cfg=cfg, seed=seed, settings=s)
    start = time.perf_counter()
    stop_at = s.max_steps
    for step in range(s.max_steps + 1):
        if step % s.record_every == 0 or step == stop_at:
            _record(traj, w, cfg, step, eval_batch)
            if progress:
                progress(step, stop_at, traj.loss[-1])
            if s.stop_threshold is not None and stop_at == s.max_steps:
                done = _all_crossed(traj, s.stop_threshold)
                if done is not None:
                    stop_at = min(s.max_steps, math.ceil(done * s.stop_margin / s.record_every) * s.record_every)
        if step >= stop_at:
            break
        batch = pop if pop is not None else sample_batch(cfg.n_pairs, cfg.d_item, s.batch, gen, items=cfg.items,
                                                       dtype=dtype)
        loss = torch.nn.functional.cross_entropy(forward_logits(w, batch), targets(batch))
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss became {float(loss)} at step {step} (lr {s.lr})")
        grads = torch.autograd.grad(loss, w.tensors())
        with torch.no_grad():
            for t, g in zip(w.tensors(), grads):
                t -= s.lr * g
    traj.weights = w.clone()
    traj.wall_s = time.perf_counter() - start
    return traj


def _record(traj: Trajectory, w: MusatWeights, cfg: MusatConfig, step: int, batch: Batch) -> None:
    loss, acc = _eval(w, batch)
    traj.steps.append(step)
    traj.loss.append(loss)
    traj.accuracy.append(acc)
    for k, v in pseudo_params(w, cfg).items():
        traj.params.setdefault(k, []).append(v)
    res = residuals(w, cfg)
    traj.residual.append(res["residual"])
    traj.symmetry_residual.append(res["symmetry_residual"])
    traj.flat.append(w.flat().float())


def _all_crossed(traj: Trajectory, threshold: float) -> int | None:
    crossings = [next((s for s, v in zip(traj.steps, traj.params[k]) if v >= threshold), None)
                 for k in ("alpha3", "beta2", "gamma3")]
    acc = traj.accuracy_step()
    if None in crossings or acc is None:
        return None
    return max(crossings + [acc])
