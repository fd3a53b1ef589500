"""Everything besides the weights that a bit-identical resume needs.

``train_state.pt`` holds the optimizer state, every RNG stream and the loop's counters
(``TrainState``), as plain tensors, numbers, lists and dicts only; it is read back with
``weights_only=True`` so loading never executes code. Files written before ``TrainState``
existed kept the counters in a free-form ``extra`` dict; they still load.
"""

import dataclasses
import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..errors import CheckpointError, RunDirError
from ..run_dir import METRICS_FILENAME, STATE_FILENAME, state_path

# 2: counters under "counters" (TrainState); 1 (no key): counters under "extra"
STATE_FORMAT = 2


@dataclass
class TrainState:
    """The training loop's counters at the end of ``step``; everything a resume continues from."""

    step: int = 0
    loss_sum: float = 0.0  # sum of training losses since the last evaluation (nats)
    loss_n: int = 0  # how many steps that sum holds
    best_pm: float = 0.0  # best prefix-matching score of any head at any evaluation so far
    elapsed: float = 0.0  # seconds spent in training steps (evaluation and saving excluded)

    def counters(self) -> dict[str, float | int]:
        """The fields besides ``step`` as plain Python numbers (``weights_only``-loadable)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "step"}

    @classmethod
    def from_counters(cls, step: int, counters: dict[str, Any]) -> "TrainState":
        """Rebuild from saved counters; unknown keys are ignored, missing ones keep defaults."""
        state = cls(step=int(step))
        for f in dataclasses.fields(cls):
            if f.name != "step" and f.name in counters:
                # int() / float() of the saved Python number: exact, so a resume stays bit-identical
                setattr(state, f.name, type(f.default)(counters[f.name]))
        return state


@dataclass
class ResumeState:
    """What ``train_state.pt`` holds: the counters plus optimizer and RNG states."""

    train: TrainState
    optimizer: dict[str, Any]
    rng: dict[str, Any]


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG stream a training step draws from: Python, NumPy, torch (CPU, CUDA), the task's."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
        "task": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put every stream ``capture_rng`` saved back where it was."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["task"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(run_dir: Path, state: TrainState, *, optimizer: torch.optim.Optimizer,
               generator: torch.Generator) -> Path:
    """Write ``train_state.pt`` atomically; returns its path."""
    payload = {"format": STATE_FORMAT, "step": int(state.step), "counters": state.counters(),
               "optimizer": optimizer.state_dict(), "rng": capture_rng(generator)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(state_path(run_dir), buf.getvalue())


def load_state(run_dir: Path) -> ResumeState:
    """Read ``train_state.pt`` (either format) without executing code from it."""
    path = state_path(run_dir)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        counters = payload["counters"] if "counters" in payload else payload["extra"]
        return ResumeState(train=TrainState.from_counters(payload["step"], counters),
                           optimizer=payload["optimizer"], rng=payload["rng"])
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} has no {STATE_FILENAME}; it cannot be resumed") from None
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read {path}: {first}") from None


def restore_into(saved: ResumeState, weights: torch.nn.Module, rows: list[dict[str, Any]], *,
                 model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 generator: torch.Generator, eval_at: list[int], run_dir: Path) -> None:
    """Put a saved step's weights, optimizer and RNG streams into a freshly built run.

    Everything is checked against the run first, so a checkpoint, state or metrics file that
    does not belong to this run is a ``RunDirError`` naming the file, never a crash mid-restore
    (or, for optimizer moments of the wrong shape, at the first step after it).
    """
    step = saved.train.step
    mine, theirs = model.state_dict(), weights.state_dict()
    wrong = sorted(k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape)
    if wrong:
        raise RunDirError(f"{run_dir}: the checkpoint at step {step} does not fit the run's "
                          f"config (e.g. '{wrong[0]}'); it belongs to another run")
    hole = sorted(set(s for s in eval_at if s <= step) - {r["step"] for r in rows})
    if hole:
        raise RunDirError(f"{run_dir}: {METRICS_FILENAME} lacks the evaluations at step(s) "
                          f"{', '.join(map(str, hole[:5]))}{' …' if len(hole) > 5 else ''} "
                          f"(damaged or replaced); resuming would leave a hole in the run's "
                          "history")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    try:
        saved_ids = [i for group in saved.optimizer["param_groups"] for i in group["params"]]
        moments = saved.optimizer["state"]
        misfit = len(saved_ids) != len(params) or any(
            isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape != params[k].shape
            for i, per_param in moments.items() for k in [saved_ids.index(i)]
            for t in per_param.values())
        if misfit:
            raise ValueError("optimizer moments do not match the model's parameters")
        model.load_state_dict(theirs)
        optimizer.load_state_dict(saved.optimizer)
        restore_rng(saved.rng, generator)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunDirError(f"{state_path(run_dir)} does not fit the run at step {step} "
                          f"({first[:160]}); it cannot be resumed") from None
