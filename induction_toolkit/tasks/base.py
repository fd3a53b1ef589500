"""What a training task is: a small frozen config that draws seeded batches of token ids.

Every training task has the same shape so the training loop, the run directory and the CLI treat
them alike: ``name`` (registry key), ``d_vocab`` (the model's vocabulary must be this big),
``seq_len`` (tokens per training sequence), ``bos_token_id`` (read back by
``LoadedModel.bos_token_id`` so scoring a run uses the run's BOS), ``special_tokens`` (never drawn
as random content when scoring), ``sample`` (a training batch from a generator), ``eval_batch``
(a fixed batch plus the index where its second — repeated — half starts) and ``to_dict``.

A task is one distribution for the whole run: ``sample``'s ``step`` argument exists for the
protocol's sake and must not change what is drawn (no curriculum: a data change mid-run confounds
every dynamic measured after it). :func:`heldout_sample` draws held-out sequences of the same
distribution (the ICL score is measured on them); a task with a held-out split of its own (text)
provides a ``heldout_sample(batch, seed)`` method.
"""

from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Int


# runtime_checkable: functions annotated ``-> TrainingTask`` are type-checked under pytest
@runtime_checkable
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


def heldout_sample(task: TrainingTask, batch: int, seed: int) -> Int[torch.Tensor, "batch pos"]:
    """``batch`` held-out token sequences ``[batch, seq_len]`` of the task's training distribution.

    Drawn with the task's own ``sample`` from a generator seeded with ``seed``, one sequence per
    call, so choices a task makes once per batch (segment length, offsets) vary over the rows;
    a task with its own held-out split supplies ``heldout_sample`` and that is used instead.
    """
    own = getattr(task, "heldout_sample", None)
    if own is not None:
        return own(batch, seed)
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([task.sample(1, generator) for _ in range(batch)], dim=0)
