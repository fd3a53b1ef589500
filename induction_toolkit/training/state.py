"""Everything besides the weights that a bit-identical resume needs: optimizer and RNG states.

Stored with ``torch.save`` as plain tensors, numbers, lists and dicts only, and read back with
``weights_only=True`` so loading never executes code.
"""

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..errors import CheckpointError

STATE_FILENAME = "train_state.pt"


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
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
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["task"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(run_dir: Path, *, step: int, optimizer: torch.optim.Optimizer,
               generator: torch.Generator, extra: dict[str, Any]) -> Path:
    payload = {"step": int(step), "optimizer": optimizer.state_dict(),
               "rng": capture_rng(generator), "extra": extra}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(Path(run_dir) / STATE_FILENAME, buf.getvalue())


def load_state(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE_FILENAME
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} has no {STATE_FILENAME}; it cannot be resumed") from None
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        raise CheckpointError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
