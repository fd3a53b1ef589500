"""The training loop: AdamW, a dense-early checkpoint schedule, metrics, atomic files, resume.

Resuming continues bit-for-bit: weights come from the checkpoint, optimizer and every RNG stream
(Python, NumPy, torch, the task's generator) from ``train_state.pt`` written right after it, and
metrics lines past the resumed step are dropped. SIGINT/SIGTERM write a resumable checkpoint at
the end of the current step and then re-raise the signal.
"""

import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from transformer_lens import HookedTransformer

from .. import __version__
from ..atomic import atomic_write_text
from ..checkpoints import (RUN_CHECKPOINT_DIR, RUN_CONFIG_FILENAME, checkpoint_name,
                           list_checkpoints, load_model, save_model)
from ..errors import ConfigError, InductionToolkitError
from ..models import (build_model, config_to_dict, default_device, preset_config,
                      preset_embed_init_std)
from ..tasks.base import TrainingTask
from ..tasks.registry import make_task, task_from_dict
from .config import TrainConfig
from .evaluate import Evaluator
from .schedule import checkpoint_steps, eval_steps
from .state import STATE_FILENAME, load_state, save_state
from .step import dropout_hooks, get_loss_fn, optimizer_options

METRICS_FILENAME = "metrics.jsonl"
FIGURES_DIR = "figures"


class NonFiniteLossError(InductionToolkitError):
    exit_code = 3


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
    run_dir: Path
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
    overrides = {**cfg.model_overrides, "d_vocab": task.d_vocab}
    model_cfg = preset_config(cfg.preset, **overrides)
    if task.seq_len > model_cfg.n_ctx:
        raise ConfigError(f"task sequences of {task.seq_len} tokens exceed the model's context "
                          f"({model_cfg.n_ctx})")
    embed_std = (cfg.embed_init_std if cfg.embed_init_std is not None
                 else preset_embed_init_std(cfg.preset))
    return build_model(model_cfg, seed=cfg.seed, device=device, embed_init_std=embed_std)


def make_optimizer(model: HookedTransformer, cfg: TrainConfig) -> torch.optim.Optimizer:
    kwargs = dict(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW(model.parameters(), **kwargs, **optimizer_options(cfg.loss_fn))
    except (RuntimeError, TypeError, ValueError):  # no fused AdamW for this device/dtype/torch
        return torch.optim.AdamW(model.parameters(), **kwargs)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_CONFIG_FILENAME
    if not Path(run_dir).is_dir() or not path.is_file():
        raise ConfigError(f"{run_dir} is not a training run (no {RUN_CONFIG_FILENAME})")
    try:
        data = json.loads(path.read_text())
        TrainConfig.from_dict(data["train"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a training run config ({exc})") from None
    return data


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILENAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    # Rewritten whole via temp file + rename: a crash leaves the old file or the new one.
    atomic_write_text(run_dir / METRICS_FILENAME,
                      "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))


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
    start_step, state = 0, None
    if resume:
        if run_dir is None:
            raise ConfigError("resume needs a run directory")
        saved = read_run_config(run_dir)
        stored = TrainConfig.from_dict(saved["train"])
        if config is not None:
            diff = config.same_run(stored)
            if diff:
                raise ConfigError(f"{run_dir} is a run with another config (differs in "
                                  f"{', '.join(diff)})")
            stored.steps, stored.device = config.steps, config.device
        config = stored
        if (run_dir / STATE_FILENAME).is_file():
            state = load_state(run_dir)
            start_step = int(state["step"])
    elif config is None:
        raise ConfigError("train() needs a config (or resume=True with a run directory)")
    elif run_dir is not None:
        _prepare_run_dir(run_dir, config)

    device = default_device() if config.device == "auto" else config.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    task = build_task(config)
    model = build_run_model(config, task, device)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    metrics: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"loss_sum": 0.0, "loss_n": 0, "best_pm": 0.0, "elapsed": 0.0}
    if state is not None:
        loaded = load_model(run_dir / RUN_CHECKPOINT_DIR / checkpoint_name(start_step), device=device)
        model.load_state_dict(loaded.model.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        from .state import restore_rng
        restore_rng(state["rng"], generator)
        extra.update(state["extra"])
        metrics = [r for r in read_metrics(run_dir) if r["step"] <= start_step]
        _write_metrics(run_dir, metrics)
    elif resume:
        # Killed before its first checkpoint: start over in the same directory.
        _prepare_run_dir(run_dir, config, fresh=True)
    if state is None:
        # Dropout draws from the global streams: seed them so a run depends on its seed alone.
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
    if run_dir is not None:
        (run_dir / FIGURES_DIR).mkdir(parents=True, exist_ok=True)

    loss_fn = get_loss_fn(config.loss_fn)
    evaluator = Evaluator(model, task, eval_batch=config.eval_batch, score_batch=config.score_batch)
    ckpt_at = set(checkpoint_steps(config.steps, every=config.checkpoint_every,
                                   n_log=config.log_checkpoints))
    eval_at = set(eval_steps(config.steps, config.eval_every))
    task_dict = task.to_dict()
    tokens_per_step = config.batch_size * task.seq_len
    last_good = start_step if state is not None else None

    def checkpoint(step: int) -> None:
        nonlocal last_good
        if run_dir is None:
            return
        save_model(model, run_dir / RUN_CHECKPOINT_DIR / checkpoint_name(step), task=task_dict,
                   step=step, seed=config.seed, extra={"train": config.to_dict()})
        save_state(run_dir, step=step, optimizer=optimizer, generator=generator, extra=extra)
        last_good = step

    def evaluate(step: int, train_loss: float | None) -> dict[str, Any]:
        row = {"step": step, "train_loss": train_loss, **evaluator(model),
               "lr": _lr_at(config, max(step - 1, 0)), "tokens": step * tokens_per_step,
               "elapsed_s": round(extra["elapsed"], 3)}
        extra["best_pm"] = max(extra["best_pm"], max(max(r) for r in row["prefix_matching"]))
        metrics.append(row)
        if run_dir is not None:
            _write_metrics(run_dir, metrics)
        return row

    if start_step == 0:
        if 0 in eval_at:
            evaluate(0, None)
        if 0 in ckpt_at:
            checkpoint(0)

    fwd_hooks = dropout_hooks(model, config.dropout)
    guard = _SignalGuard() if handle_signals else None
    model.train()
    last_eval = metrics[-1] if metrics else None
    t_last = time.perf_counter()
    with guard if guard is not None else _nullcontext():
        for step in range(start_step + 1, config.steps + 1):
            tokens = task.sample(config.batch_size, generator, step=step).to(device)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(config, step - 1)
            if fwd_hooks:
                with model.hooks(fwd_hooks=fwd_hooks):
                    loss = loss_fn(model, tokens)
            else:
                loss = loss_fn(model, tokens)
            value = float(loss.detach())
            if not math.isfinite(value):
                where = f"step {last_good}" if last_good is not None else "none"
                raise NonFiniteLossError(f"loss became non-finite at step {step}; "
                                         f"last good checkpoint: {where}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            now = time.perf_counter()
            dt, t_last = now - t_last, now
            extra["elapsed"] += dt
            extra["loss_sum"] += value
            extra["loss_n"] += 1
            if step in eval_at:
                mean = extra["loss_sum"] / max(extra["loss_n"], 1)
                extra["loss_sum"], extra["loss_n"] = 0.0, 0
                last_eval = evaluate(step, mean)
                t_last = time.perf_counter()  # evaluation time is not training throughput
            if step in ckpt_at or (guard is not None and guard.received is not None):
                checkpoint(step)
                t_last = time.perf_counter()
            if progress is not None:
                progress(Progress(step=step, total=config.steps, loss=value,
                                  tokens_per_s=tokens_per_step / max(dt, 1e-9),
                                  best_prefix_matching=extra["best_pm"], last_eval=last_eval))
            if guard is not None and guard.received is not None:
                guard.reraise()
    model.eval()
    return TrainResult(run_dir=run_dir, model=model, config=config, task=task, metrics=metrics,
                       resumed_from=start_step if state is not None else None)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def check_new_run_dir(run_dir: str | Path, config: TrainConfig) -> None:
    """Raise ``ConfigError`` unless ``run_dir`` can receive a new run of ``config``."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is an existing file, not a run directory")
    if (run_dir / RUN_CONFIG_FILENAME).is_file():
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
    task = build_task(config)
    return preset_config(config.preset, **{**config.model_overrides, "d_vocab": task.d_vocab})


def _prepare_run_dir(run_dir: Path, config: TrainConfig, fresh: bool = False) -> None:
    if not fresh:
        check_new_run_dir(run_dir, config)
    task = build_task(config)
    model_cfg = preset_config(config.preset, **{**config.model_overrides, "d_vocab": task.d_vocab})
    payload = {"train": config.to_dict(), "model": config_to_dict(model_cfg),
               "task": task.to_dict(), "toolkit_version": __version__}
    atomic_write_text(run_dir / RUN_CONFIG_FILENAME, json.dumps(payload, indent=2) + "\n")
    (run_dir / RUN_CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
