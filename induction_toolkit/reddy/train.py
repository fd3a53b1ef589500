"""Train Reddy (2023)'s network on its in-context classification data, into a run directory or in memory.

One run: the data world and the weights drawn from ``seed``, plain SGD (lr 0.01, batch 128,
weight decay 1e-6 by default, as the author's code), cross-entropy on the target's label. Every
``eval_every`` steps one metrics row: the mean training loss since the last row, then IC, IW and
swapped accuracy (and loss) and the progress measures ILA1/TILA2/CLA/TLA2 on ``eval_n`` held-out
sequences per set (1000 by default, the paper's number for the measures; drawn once from a seed
of their own, never the training stream).

The run directory has the usual layout (:mod:`induction_toolkit.run_dir`): ``config.json``
(``train``: a ``TrainConfig`` with ``preset="reddy"``, ``task="reddy"`` and the data parameters as
``task_options``; ``reddy``: the optimiser and network settings), the metrics rows, and
safetensors checkpoints (:func:`load_reddy` reads them back; no pickled code).
"""

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_write_bytes
from ..checkpoints import META_FORMAT, REDDY_FORMAT_NAME
from ..errors import ConfigError, NonFiniteLossError, RunDirError
from ..run_dir import (checkpoint_path, create_run_dir, list_checkpoints, read_run_config,
                       write_metrics)
from ..tasks.reddy import EVAL_SETS, ReddyConfig, ReddyTask
from ..training.config import TrainConfig
from .network import ReddyNetwork
from .progress import MEASURES, evaluate

DEFAULTS = {"lr": 0.01, "weight_decay": 1e-6, "batch_size": 128}


@dataclass
class ReddyRun:
    """A finished (or in-memory) run: its config, metrics rows, final network and timing."""

    config: TrainConfig
    data: ReddyConfig
    model: ReddyNetwork
    task: ReddyTask
    metrics: list[dict[str, Any]]
    seconds_per_step: float  # wall clock, the training step alone (no evaluation)
    run_dir: Path | None = None
    cpu_seconds_per_step: float | None = None  # process CPU time per step: the idle-machine cost
    notes: list[str] = field(default_factory=list)

    def series(self, key: str) -> np.ndarray:
        """One metric over the evaluations, as an array (``nan`` where a row lacks it)."""
        return np.array([r.get(key, math.nan) for r in self.metrics], dtype=float)

    @property
    def steps(self) -> np.ndarray:
        """The step of every metrics row."""
        return self.series("step")

    def transition_step(self, threshold: float = 0.5) -> int | None:
        """First evaluated step at which IC accuracy reaches ``threshold`` (``None`` if never)."""
        return crossing_step(self.metrics, threshold)

    def final(self) -> dict[str, Any]:
        """The last metrics row."""
        return self.metrics[-1] if self.metrics else {}


def crossing_step(rows: list[dict[str, Any]], threshold: float = 0.5,
                  key: str = "ic_accuracy") -> int | None:
    """First row's step with ``rows[key] ≥ threshold``; ``None`` when no row gets there."""
    for r in rows:
        if r.get(key) is not None and r[key] >= threshold:
            return int(r["step"])
    return None


def reddy_train_config(data: ReddyConfig, *, steps: int, seed: int = 0, eval_every: int = 500,
                       lr: float | None = None, weight_decay: float | None = None,
                       batch_size: int | None = None, device: str = "cpu") -> TrainConfig:
    """The run's ``TrainConfig``: preset and task ``reddy``, the data parameters as task options."""
    options = data.to_dict()
    options.pop("name")
    return TrainConfig(preset="reddy", task="reddy", steps=steps, seed=seed, eval_every=eval_every,
                       lr=DEFAULTS["lr"] if lr is None else lr,
                       weight_decay=DEFAULTS["weight_decay"] if weight_decay is None else weight_decay,
                       batch_size=DEFAULTS["batch_size"] if batch_size is None else batch_size,
                       warmup=0, log_checkpoints=0, device=device, task_options=options)


def data_config(config: TrainConfig) -> ReddyConfig:
    """The data parameters of a Reddy run's ``TrainConfig`` (unknown options are an error)."""
    try:
        return ReddyConfig(**config.task_options)
    except TypeError as exc:
        raise ConfigError(f"invalid options for task 'reddy': {exc}") from None


def train_reddy(config: TrainConfig, out: str | Path | None = None, *, eval_n: int = 1000,
                progress: Callable[[int, int, float], None] | None = None,
                on_eval: Callable[[dict[str, Any], Any], None] | None = None,
                checkpoints: int = 10, model_kind: str = "network", hidden: int = 128) -> ReddyRun:
    """Train one run; write it to ``out`` (a new or empty directory) when given.

    ``progress(step, total, loss)`` is called after every step. ``checkpoints`` linearly spaced
    checkpoints (plus step 0) are written when ``out`` is given; ``on_eval(row, model)`` sees every
    metrics row as it is recorded, with the model at that step. ``model_kind``: ``network`` (the paper's network), ``minimal``
    (the three-parameter induction head on the same classifier) or ``minimal-beta2-0`` (β₂ fixed
    at 0, the two-parameter model); the minimal ones add β₁, α, β₂ to every metrics row. ``hidden``: query/key and classifier
    width (the paper's 128; smaller for quick test runs, recorded in the run's config).
    """
    data = data_config(config)
    if config.device not in ("auto", "cpu"):
        raise ConfigError("the reddy task runs on the CPU (the network is tiny); pass --device cpu")
    if out is not None and model_kind != "network":
        raise ConfigError("only the full network is written to a run directory")
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise RunDirError(f"{out} exists and is not an empty directory; a reddy run cannot be resumed")
    torch.manual_seed(config.seed)
    task = data.build(config.seed)
    model = build_model(model_kind, data, config.seed, hidden)
    opt = torch.optim.SGD(model.trainable_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    evals = {name: task.eval_set(name, eval_n, seed=10_000 + config.seed) for name in EVAL_SETS}
    gen = torch.Generator().manual_seed(config.seed)
    keep = set(np.unique(np.linspace(0, config.steps, checkpoints + 1).round().astype(int)).tolist())
    if out is not None:
        create_run_dir(out, {"train": config.to_dict(), "task": task.to_dict(),
                             "model": _model_settings(model), "version": __version__})
    rows: list[dict[str, Any]] = []
    losses: list[float] = []
    step_time = cpu_time = 0.0

    def record(step: int) -> None:
        row: dict[str, Any] = {"step": step}
        row["train_loss"] = float(np.mean(losses)) if losses else None
        losses.clear()
        for name in EVAL_SETS:
            m = evaluate(model, evals[name], measures=name == "ic")
            row[f"{name}_accuracy"] = m.pop("accuracy")
            row[f"{name}_loss"] = m.pop("loss")
            row.update({k: m[k] for k in MEASURES if k in m})
        if model_kind != "network":
            row.update(model.scalars())
        rows.append(row)
        if on_eval is not None:
            on_eval(row, model)
        if out is not None:
            write_metrics(out, rows)
            if step in keep:
                _save(model, checkpoint_path(out, step), step)

    record(0)
    for step in range(1, config.steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        batch = task.sample(config.batch_size, gen)
        loss = torch.nn.functional.cross_entropy(model.fast_forward(batch.inputs), batch.target)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step_time += time.perf_counter() - t0
        cpu_time += time.process_time() - c0
        losses.append(loss.item())
        if progress is not None:
            progress(step, config.steps, losses[-1])
        if step % config.eval_every == 0 or step == config.steps:
            record(step)
    return ReddyRun(config, data, model, task, rows, step_time / config.steps,
                    out if out is not None else None, cpu_seconds_per_step=cpu_time / config.steps)


MODEL_KINDS = ("network", "minimal", "minimal-beta2-0")


def build_model(kind: str, data: ReddyConfig, seed: int, hidden: int = 128):
    """A freshly initialised model of ``kind`` (see ``train_reddy``) for the data ``data``."""
    if kind == "network":
        return ReddyNetwork(data.d_model, data.seq_len, data.L, seed=seed, hidden=hidden)
    if kind in ("minimal", "minimal-beta2-0"):
        from .minimal import MinimalInductionModel

        return MinimalInductionModel(data.D, data.L, fix_beta2=kind != "minimal", seed=seed,
                                     hidden=hidden)
    raise ConfigError(f"unknown model kind '{kind}'; choose one of: {', '.join(MODEL_KINDS)}")


def _model_settings(model: ReddyNetwork) -> dict[str, Any]:
    return {"name": "reddy", "d_model": model.cfg.d_model, "d_head": model.cfg.d_head,
            "n_layers": 2, "n_heads": 1, "seq_len": model.cfg.n_ctx, "n_labels": model.cfg.d_vocab,
            "classifier_hidden": [m.out_features for m in model.classifier
                                  if isinstance(m, torch.nn.Linear)][:-1],
            "optimizer": "sgd", "attn_scale": 1.0, "normalization": None}


def _save(model: ReddyNetwork, path: Path, step: int) -> None:
    from safetensors.torch import save as st_save_bytes

    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {META_FORMAT: REDDY_FORMAT_NAME, "step": str(step),
            "model": json.dumps(_model_settings(model))}
    atomic_write_bytes(path, st_save_bytes(tensors, metadata=meta))


def is_reddy_run(run_dir: str | Path) -> bool:
    """True when ``run_dir`` is a run of the reddy task."""
    try:
        return read_run_config(run_dir)["train"].get("task") == "reddy"
    except (RunDirError, OSError):
        return False


def load_reddy(run_dir: str | Path, step: int | None = None) -> tuple[ReddyNetwork, ReddyTask, TrainConfig]:
    """The network at ``step`` (default the latest checkpoint), the run's data world and config."""
    from safetensors.torch import load_file

    cfg_dict = read_run_config(run_dir)
    config = TrainConfig.from_dict(cfg_dict["train"])
    if config.task != "reddy":
        raise RunDirError(f"{run_dir} is not a reddy run (task '{config.task}')")
    data = data_config(config)
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise RunDirError(f"{run_dir} has no checkpoints")
    if step is not None and step not in ckpts:
        raise RunDirError(f"{run_dir} has no checkpoint at step {step}; available: "
                          f"{', '.join(map(str, ckpts))}")
    settings = cfg_dict.get("model") or {}
    hidden = settings.get("d_head", 128)  # the width it was trained with (128: the paper's)
    widths = settings.get("classifier_hidden") or [hidden] * 3
    model = ReddyNetwork(data.d_model, data.seq_len, data.L, hidden=hidden, n_hidden_layers=len(widths))
    model.load_state_dict(load_file(str(ckpts[max(ckpts) if step is None else step])))
    return model, data.build(config.seed), config
