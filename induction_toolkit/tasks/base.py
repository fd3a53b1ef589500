"""What a training task is: a small frozen config that draws seeded batches of token ids.

Every training task has the same shape so the training loop, the run directory and the CLI treat
them alike: ``name`` (registry key), ``d_vocab`` (the model's vocabulary must be this big),
``seq_len`` (tokens per training sequence), ``bos_token_id`` (read back by
``LoadedModel.bos_token_id`` so scoring a run uses the run's BOS), ``special_tokens`` (never drawn
as random content when scoring), ``sample`` (a training batch from a generator), ``eval_batch``
(a fixed batch plus the index where its second — repeated — half starts) and ``to_dict``.
"""

from typing import Any, Protocol

import torch
from jaxtyping import Int


class TrainingTask(Protocol):
    """The interface every training task implements (see the module docstring)."""

    name: str
    d_vocab: int
    seq_len: int
    bos_token_id: int | None

    @property
    def special_tokens(self) -> tuple[int, ...]:
        """Token ids never drawn as random content (BOS, separators)."""

    def sample(self, batch: int, generator: torch.Generator,
               step: int = 0) -> Int[torch.Tensor, "batch pos"]:
        """A training batch of token ids, ``[batch, seq_len]``, drawn from ``generator``."""

    def eval_batch(self, batch: int, seed: int) -> tuple[Int[torch.Tensor, "batch pos"], int]:
        """A fixed evaluation batch of token ids and the position where its repeated half starts."""

    def to_dict(self) -> dict[str, Any]:
        """The task's settings as a JSON-ready dict (enough to rebuild it)."""


def uniform_int(low: int, high: int, generator: torch.Generator) -> int:
    """One integer uniform in ``[low, high]`` drawn from ``generator`` (so it is part of its state)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))
