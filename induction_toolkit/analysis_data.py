"""What the analysis commands run a model on, supplied by the run's task: one place decides.

``induct score``, ``ablate``, ``patch``, ``weights`` and ``report`` measure heads on inputs through
metrics. :func:`analysis_data` loads a checkpoint or run directory and returns an
:class:`AnalysisData` saying what those are:

- a token model (a run of any token task, a checkpoint file, a pretrained model): repeated random
  tokens and their corrupted twin (earlier copies replaced), the loss on the repeated half with the
  first half as the control (:mod:`induction_toolkit.causal.data`), weight blocks in the rows of
  ``W_E``/``W_pos``, the token-sequence scores of :mod:`induction_toolkit.scores`;
- a run of a task named in ``TASK_ANALYSES`` (Reddy's: continuous input vectors, one label per
  sequence): whatever that task's module builds (:mod:`induction_toolkit.reddy.analysis`).

A new task whose inputs are not token ids adds one entry to ``TASK_ANALYSES``; no command changes.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int

from .causal.ablation import AblationMetrics
from .causal.data import ModelInput, SequenceMetric
from .errors import ConfigError

Head = tuple[int, int]

# task name → module with ``load(path, *, step, device) -> AnalysisData`` (imported on use)
TASK_ANALYSES: dict[str, str] = {"reddy": "induction_toolkit.reddy.analysis"}


@dataclass
class CausalInputs:
    """Clean and corrupted inputs of ablation and patching, and what is measured on them.

    ``clean``/``corrupted``: token ids or input vectors, same shape; the corrupted input removes
    what the circuit reads, so patching a head from clean into corrupted measures what it carries.
    ``ablation``: the ablation metrics, measured on ``ablation_inputs`` (``clean`` unless the task
    ablates on more sets than it patches on). ``metrics``: the patching metric of each
    ``--metric`` kind. ``data``: the ``--json`` ``data`` block; ``description``: the patching pair in
    one sentence, for reports (``ablation_description``: the ablation inputs, when they differ);
    ``notes``: choices worth printing (``patch_notes``: those about the patching pair only).
    """

    clean: ModelInput
    corrupted: ModelInput
    ablation: AblationMetrics
    metrics: dict[str, SequenceMetric]
    data: dict[str, Any]
    description: str
    notes: list[str] = field(default_factory=list)
    # its own batch size: a task may ablate on more sequences than it patches on
    ablation_inputs: Int[torch.Tensor, "rows pos"] | Float[torch.Tensor, "rows pos d_model"] | None = None
    ablation_description: str | None = None
    patch_notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ablation_inputs is None:
            self.ablation_inputs = self.clean
        if self.ablation_description is None:
            self.ablation_description = self.description

    def metric_of(self, kind: str) -> SequenceMetric:
        """The patching metric ``kind`` (``logprob`` or ``logit``)."""
        if kind not in self.metrics:
            raise ConfigError(f"unknown metric '{kind}'; choose one of {', '.join(self.metrics)}")
        return self.metrics[kind]


@dataclass
class AnalysisData:
    """A loaded model and how its task wants it analysed (see the module docstring).

    ``causal(seq_len=, repeats=, batch=, seed=)`` → :class:`CausalInputs` (token models use the
    lengths; a task with sequences of its own ignores them and says so in the notes). ``basis``:
    the vectors weight blocks are read in (None: the model's ``W_E``/``W_pos``/``W_U``).
    ``task_scores(batch, seed)``: the task's per-head scores (None: the token-sequence scores of
    ``induct score``), a dict with ``heads``, ``previous_token_head`` and ``induction_head``.
    ``omitted``: report sections that do not apply to this model, with why.
    """

    loaded: Any  # checkpoints.LoadedModel
    task: str  # "tokens", or the name of the task that supplied everything below
    causal: Callable[..., CausalInputs]
    basis: Any = None  # weights.circuits.Basis
    task_scores: Callable[[int, int], dict[str, Any]] | None = None
    omitted: dict[str, str] = field(default_factory=dict)

    @property
    def model(self):
        """The loaded model (a ``HookedTransformer`` or a hookable module with its hook names)."""
        return self.loaded.model


def run_task(path: str | Path) -> str | None:
    """The task name in a run directory's config, or None (not a run, or unreadable: the loader says)."""
    from .errors import RunDirError
    from .run_dir import is_run_dir, read_run_config

    try:
        if not is_run_dir(path):
            return None
        return read_run_config(path).get("train", {}).get("task")
    except (RunDirError, OSError, AttributeError):
        return None


def analysis_data(path: str | Path, *, config: Any = None, step: int | None = None,
                  device: str | None = None, dtype: str | None = None) -> AnalysisData:
    """Load ``path`` (checkpoint, run directory or model name) with its task's analysis inputs."""
    task = run_task(path) if Path(str(path)).is_dir() else None
    if task in TASK_ANALYSES:
        return importlib.import_module(TASK_ANALYSES[task]).load(
            path, step=step, device=device, config=config, dtype=dtype)
    from .checkpoints import load_model

    loaded = load_model(path, config=config, device=device, step=step, dtype=dtype)
    return AnalysisData(loaded, "tokens", lambda **kw: token_causal_inputs(loaded, **kw))


def token_causal_inputs(loaded, *, seq_len: int, repeats: int, batch: int, seed: int) -> CausalInputs:
    """Repeated random tokens and their corrupted twins (``causal.data``), for a token model."""
    from .causal.ablation import repeated_metrics
    from .causal.data import causal_task, make_prompt_pair

    task, notes = causal_task(loaded.model, seq_len=seq_len, repeats=repeats,
                              bos_token_id=loaded.bos_token_id, exclude=loaded.special_token_ids)
    pair = make_prompt_pair(task, batch, seed=seed)
    return CausalInputs(
        pair.clean, pair.corrupted, repeated_metrics(pair.clean, task, seed=seed),
        {k: pair.metric_of(k) for k in ("logprob", "logit")}, pair.data_dict(),
        f"{task.seq_len} random tokens × {task.repeats}", notes)
