"""The training loop: AdamW, a dense-early checkpoint schedule, metrics, atomic files, resume.

Resuming continues bit-for-bit: weights come from the checkpoint, optimizer and every RNG stream
(Python, NumPy, torch, the task's generator) from ``train_state.pt`` written right after it, and
metrics lines past the resumed step are dropped. SIGINT/SIGTERM write a resumable checkpoint at
the end of the current step and then re-raise the signal.

Shape: ``train`` = ``_open_run`` (new run, or config and ``TrainState`` of the one to resume) →
``_Run`` (builds model, optimizer and RNG streams in a fixed order) → ``_Run.run``, a loop of
``step`` / ``evaluate`` / ``checkpoint``. File names and formats belong to ``run_dir``.
"""

import contextlib
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformer_lens import HookedTransformer

from .. import __version__
from ..checkpoints import load_model, save_model
from ..errors import ConfigError, NonFiniteLossError
from ..models import (build_model, config_to_dict, default_device, preset_config,
                      preset_embed_init_std)
from ..run_dir import (CONFIG_FILENAME, checkpoint_path, create_run_dir, figures_dir,
                       list_checkpoints, read_metrics, read_run_config, remove_partial_writes,
                       state_path, write_metrics)
from ..tasks.base import TrainingTask
from ..tasks.registry import make_task
from .config import TrainConfig
from ..musat.proxies import proxy_row
from .evaluate import Evaluator, non_finite_field
from .interventions import TrainingInterventions
from .schedule import checkpoint_steps, eval_steps
from .state import ResumeState, TrainState, load_state, restore_into, save_state
from .step import dropout_hooks, get_loss_fn, optimizer_options


@dataclass
class Progress:
    """What a progress display needs after each step."""

    step: int
    total: int
    loss: float
    tokens_per_s: float
    best_prefix_matching: float
    last_eval: dict[str, Any] | None = None


@dataclass
class TrainResult:
    """A finished run: its directory (None when nothing was written), model, config and metrics."""

    run_dir: Path | None
    model: HookedTransformer
    config: TrainConfig
    task: TrainingTask
    metrics: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None


def build_task(cfg: TrainConfig) -> TrainingTask:
    """The run's task; tasks with a vocabulary/length default to the preset's."""
    model_cfg = preset_config(cfg.preset, **cfg.model_overrides)
    options = dict(cfg.task_options)
    if cfg.task != "text":
        options.setdefault("d_vocab", model_cfg.d_vocab)
    options.setdefault("seq_len", model_cfg.n_ctx)
    return make_task(cfg.task, **options)


def build_run_model(cfg: TrainConfig, task: TrainingTask, device: str) -> HookedTransformer:
    """The run's freshly initialised model (seeded by ``cfg.seed``) on ``device``."""
    overrides = {**cfg.model_overrides, "d_vocab": task.d_vocab}
    model_cfg = preset_config(cfg.preset, **overrides)
    if task.seq_len > model_cfg.n_ctx:
        raise ConfigError(f"task sequences of {task.seq_len} tokens exceed the model's context "
                          f"({model_cfg.n_ctx})")
    embed_std = (cfg.embed_init_std if cfg.embed_init_std is not None
                 else preset_embed_init_std(cfg.preset))
    return build_model(model_cfg, seed=cfg.seed, device=device, embed_init_std=embed_std)


def make_optimizer(model: HookedTransformer, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters (fused where the device and torch allow it)."""
    kwargs = dict(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW(model.parameters(), **kwargs, **optimizer_options(cfg.loss_fn))
    except (RuntimeError, TypeError, ValueError):  # no fused AdamW for this device/dtype/torch
        return torch.optim.AdamW(model.parameters(), **kwargs)


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr


class _SignalGuard:
    """Defers SIGINT/SIGTERM to the end of the current step, then lets the loop save and re-raise."""

    def __init__(self):
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False

    def reraise(self) -> None:
        sig = self.received
        self.__exit__()
        self._old = {}
        os.kill(os.getpid(), sig)  # the previous handler (KeyboardInterrupt, exit) now runs
        raise KeyboardInterrupt  # in case that handler returned


def train(config: TrainConfig | None = None, out: str | Path | None = None, *,
          resume: bool = False, progress: Callable[[Progress], None] | None = None,
          handle_signals: bool = True) -> TrainResult:
    """Train ``config`` into run directory ``out`` (``resume=True``: continue the run in ``out``).

    With ``out=None`` nothing is written (no checkpoints, no metrics file). Returns the final
    model (eval mode) and every metrics row.
    """
    run_dir = Path(out) if out is not None else None
    config, saved = _open_run(config, run_dir, resume)
    run = _Run(config, run_dir, saved)
    run.run(progress, handle_signals)
    run.model.eval()
    return TrainResult(run_dir=run_dir, model=run.model, config=config, task=run.task,
                       metrics=run.metrics, resumed_from=run.resumed_from)


def _open_run(config: TrainConfig | None, run_dir: Path | None,
              resume: bool) -> tuple[TrainConfig, ResumeState | None]:
    """The run's config and, when resuming past its first checkpoint, the saved state."""
    if not resume:
        if config is None:
            raise ConfigError("train() needs a config (or resume=True with a run directory)")
        if run_dir is not None:
            _prepare_run_dir(run_dir, config)
        return config, None
    if run_dir is None:
        raise ConfigError("resume needs a run directory")
    stored = TrainConfig.from_dict(read_run_config(run_dir)["train"])
    remove_partial_writes(run_dir)  # what a kill mid-write left; never read
    if config is not None:
        diff = config.same_run(stored)
        if diff:
            raise ConfigError(f"{run_dir} is a run with another config (differs in "
                              f"{', '.join(diff)})")
        stored.steps, stored.device = config.steps, config.device
    if state_path(run_dir).is_file():
        return stored, load_state(run_dir)
    # Killed before its first checkpoint: start over in the same directory.
    _prepare_run_dir(run_dir, stored, fresh=True)
    return stored, None


class _Run:
    """One training run in progress: model, optimizer, RNG streams, counters, metrics, files.

    Construction builds everything in a fixed order (weights, optimizer, generator, then the
    restored or freshly seeded RNG streams): a resumed run must consume randomness exactly as the
    uninterrupted one did.
    """

    def __init__(self, config: TrainConfig, run_dir: Path | None, saved: ResumeState | None):
        self.config, self.run_dir = config, run_dir
        self.device = default_device() if config.device == "auto" else config.device
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("device cuda requested but CUDA is not available")
        self.task = build_task(config)
        self.model = build_run_model(config, self.task, self.device)
        self.optimizer = make_optimizer(self.model, config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.state = TrainState()
        self.metrics: list[dict[str, Any]] = []
        self.resumed_from: int | None = None
        self.last_good: int | None = None  # step of the newest checkpoint on disk
        if saved is not None:
            self._restore(saved)
        else:
            # Dropout draws from the global streams: seed them so a run depends on its seed alone.
            random.seed(config.seed)
            np.random.seed(config.seed)
            torch.manual_seed(config.seed)
        if run_dir is not None:
            figures_dir(run_dir).mkdir(parents=True, exist_ok=True)

        self.loss_fn = get_loss_fn(config.loss_fn)
        self.evaluator = Evaluator(self.model, self.task, eval_batch=config.eval_batch,
                                   score_batch=config.score_batch)
        self.ckpt_at = set(checkpoint_steps(config.steps, every=config.checkpoint_every,
                                            n_log=config.log_checkpoints))
        self.eval_at = set(eval_steps(config.steps, config.eval_every))
        self.task_dict = self.task.to_dict()
        self.tokens_per_step = config.batch_size * self.task.seq_len
        self.fwd_hooks = dropout_hooks(self.model, config.dropout)
        # hooks only where asked: no interventions → the fused forward as before
        self.interventions = TrainingInterventions(self.model, config.interventions)

    def _restore(self, saved: ResumeState) -> None:
        """Weights from the checkpoint at the saved step; optimizer, RNG, counters from the state."""
        step = saved.train.step
        loaded = load_model(checkpoint_path(self.run_dir, step), device=self.device)
        self.metrics = [r for r in read_metrics(self.run_dir) if r["step"] <= step]
        restore_into(saved, loaded.model, self.metrics, model=self.model,
                     optimizer=self.optimizer, generator=self.generator, run_dir=self.run_dir,
                     eval_at=eval_steps(self.config.steps, self.config.eval_every))
        self.state = saved.train
        self.resumed_from = self.last_good = step
        write_metrics(self.run_dir, self.metrics)

    def run(self, progress: Callable[[Progress], None] | None, handle_signals: bool) -> None:
        """Train from the current step to ``config.steps``, evaluating and checkpointing."""
        if self.resumed_from is None:
            if 0 in self.eval_at:
                self.evaluate(0, None)
            if 0 in self.ckpt_at:
                self.checkpoint(0)
        guard = _SignalGuard() if handle_signals else None
        self.model.train()
        last_eval = self.metrics[-1] if self.metrics else None
        with guard if guard is not None else contextlib.nullcontext():
            for step in range(self.state.step + 1, self.config.steps + 1):
                loss, dt = self.step(step)
                if step in self.eval_at:
                    last_eval = self.evaluate(step, self._take_mean_loss())
                stopping = guard is not None and guard.received is not None
                if step in self.ckpt_at or stopping:
                    self.checkpoint(step)
                if progress is not None:
                    progress(Progress(step=step, total=self.config.steps, loss=loss,
                                      tokens_per_s=self.tokens_per_step / max(dt, 1e-9),
                                      best_prefix_matching=self.state.best_pm,
                                      last_eval=last_eval))
                if stopping:
                    guard.reraise()

    def step(self, step: int) -> tuple[float, float]:
        """One optimizer step (1-based ``step``); returns (its training loss in nats, seconds)."""
        t0 = time.perf_counter()
        tokens = self.task.sample(self.config.batch_size, self.generator, step=step).to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = _lr_at(self.config, step - 1)
        with self.interventions.applied(step):
            if self.fwd_hooks:
                with self.model.hooks(fwd_hooks=self.fwd_hooks):
                    loss = self.loss_fn(self.model, tokens)
            else:
                loss = self.loss_fn(self.model, tokens)
        value = float(loss.detach())
        if not math.isfinite(value):
            where = f"step {self.last_good}" if self.last_good is not None else "none"
            raise NonFiniteLossError(f"loss became non-finite at step {step}; "
                                     f"last good checkpoint: {where}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        dt = time.perf_counter() - t0
        self.state.step = step
        self.state.elapsed += dt
        self.state.loss_sum += value
        self.state.loss_n += 1
        return value, dt

    def _take_mean_loss(self) -> float:
        """Mean training loss since the last evaluation (nats); restarts the running sum."""
        mean = self.state.loss_sum / max(self.state.loss_n, 1)
        self.state.loss_sum, self.state.loss_n = 0.0, 0
        return mean

    def evaluate(self, step: int, train_loss: float | None) -> dict[str, Any]:
        """Evaluate the model, append one metrics row (and rewrite metrics.jsonl); returns it."""
        with self.interventions.applied(step):  # metrics of the function being trained
            evaluated = self.evaluator(self.model)
        if self.interventions:
            evaluated["interventions_active"] = [iv.label for iv in self.interventions.active(step)]
        row = {"step": step, "train_loss": train_loss, **evaluated,
               "lr": _lr_at(self.config, max(step - 1, 0)), "tokens": step * self.tokens_per_step,
               "elapsed_s": round(self.state.elapsed, 3)}
        bad = non_finite_field(row)
        if bad is not None:  # the last step's update left a model that evaluates to NaN/inf
            where = f"step {self.last_good}" if self.last_good is not None else "none"
            raise NonFiniteLossError(f"loss became non-finite at step {step} ({bad} in the "
                                     f"evaluation); last good checkpoint: {where}")
        row.update(proxy_row(self.model))  # Musat's α̃₃ β̃₂ γ̃₃ (2-layer models only; docs/musat.md)
        self.state.best_pm = max(self.state.best_pm,
                                 max(max(r) for r in row["prefix_matching"]))
        self.metrics.append(row)
        if self.run_dir is not None:
            write_metrics(self.run_dir, self.metrics)
        return row

    def checkpoint(self, step: int) -> None:
        """Write the weights at ``step``, then the state that resumes from them."""
        if self.run_dir is None:
            return
        self.state.step = step
        save_model(self.model, checkpoint_path(self.run_dir, step), task=self.task_dict,
                   step=step, seed=self.config.seed, extra={"train": self.config.to_dict()})
        save_state(self.run_dir, self.state, optimizer=self.optimizer, generator=self.generator)
        self.last_good = step


def check_new_run_dir(run_dir: str | Path, config: TrainConfig) -> None:
    """Raise ``ConfigError`` unless ``run_dir`` can receive a new run of ``config``."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is an existing file, not a run directory")
    existing = next(p for p in (run_dir.absolute(), *run_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {run_dir} cannot be created: {existing} is a file, not a "
                          "directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {run_dir} cannot be created: {existing} is not writable")
    if (run_dir / CONFIG_FILENAME).is_file():
        stored = TrainConfig.from_dict(read_run_config(run_dir)["train"])
        diff = config.same_run(stored)
        if diff:
            raise ConfigError(f"--out {run_dir} is a run with another config (differs in "
                              f"{', '.join(diff)})")
        if list_checkpoints(run_dir):
            raise ConfigError(f"--out {run_dir} already holds this run; use --resume {run_dir}")
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        raise ConfigError(f"--out {run_dir} is a non-empty directory that is not a run")
    build_run_model_config(config)


def build_run_model_config(config: TrainConfig):
    """The run's ``HookedTransformerConfig`` (preset, overrides, the task's vocabulary)."""
    task = build_task(config)
    return preset_config(config.preset, **{**config.model_overrides, "d_vocab": task.d_vocab})


def _prepare_run_dir(run_dir: Path, config: TrainConfig, fresh: bool = False) -> None:
    if not fresh:
        check_new_run_dir(run_dir, config)
    task = build_task(config)
    model_cfg = build_run_model_config(config)
    create_run_dir(run_dir, {"train": config.to_dict(), "model": config_to_dict(model_cfg),
                             "task": task.to_dict(), "toolkit_version": __version__,
                             "interventions": list(config.interventions)})
