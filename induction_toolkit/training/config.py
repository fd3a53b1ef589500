"""What a training run is: one JSON-able dataclass, saved as the run's ``config.json``."""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

# Fields that may differ between a run and its resumption without making it another run:
# where it runs, and how far it goes (extending a finished run is allowed).
RESUMABLE_FIELDS = frozenset({"device", "steps"})
# Fields every stored config has had since the first run directory.
REQUIRED_FIELDS = ("preset", "task", "steps", "lr", "batch_size", "seed")


def _json_type_ok(value: Any, annotation: Any) -> bool:
    """Whether a value read from JSON fits a field annotated ``annotation`` (bool is no number)."""
    if isinstance(annotation, types.UnionType):
        return any(_json_type_ok(value, a) for a in annotation.__args__)
    origin = typing.get_origin(annotation) or annotation
    if annotation is type(None):
        return value is None
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is Any:
        return True
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if origin is tuple and len(args) > 1:  # tuple[float, float]: one type per place
            return len(value) == len(args) and all(map(_json_type_ok, value, args))
        return not args or all(_json_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, origin) if isinstance(origin, type) else True


@dataclass
class TrainConfig:
    """Everything that defines a training run: model preset, task, schedule, optimiser, seed, device."""

    preset: str = "attn-only-2l"
    task: str = "repeated"
    steps: int = 1500
    lr: float = 3e-3
    warmup: int = 0
    weight_decay: float = 0.01
    betas: tuple[float, float] | list[float] = (0.9, 0.99)  # a list when read from JSON; kept as a tuple
    batch_size: int = 32
    dropout: float = 0.0
    seed: int = 0
    eval_every: int = 10  # dense enough to resolve the induction transition (docs/training.md)
    eval_batch: int = 64  # sequences of the task's eval batch (losses, ICL score)
    score_batch: int = 32  # repeated-token sequences for per-head scores
    checkpoint_every: int | None = None  # linear part of the schedule; default steps // 10
    log_checkpoints: int = 20  # log-spaced checkpoints between step 1 and the end
    device: str = "auto"
    # std of the initial token/position embeddings; None: the preset's (models.PRESET_EMBED_INIT_STD)
    embed_init_std: float | None = None
    # name in training.step.LOSS_FNS: the hot path's forward. "fast" is the fused forward (same
    # losses as the hooked one within 1e-6, tests/test_fast_forward.py), "hooked" TL's own.
    loss_fn: str = "fast"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    # training-time head interventions (training.interventions.Intervention.to_dict), in order
    interventions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if self.steps <= 0:
            raise ConfigError(f"steps must be > 0, got {self.steps}")
        for name in ("batch_size", "eval_every", "eval_batch", "score_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.warmup < 0 or self.weight_decay < 0 or self.log_checkpoints < 0:
            raise ConfigError("warmup, weight-decay and log-checkpoints must be ≥ 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.embed_init_std is not None and not self.embed_init_std > 0:
            raise ConfigError(f"embed-init-std must be > 0, got {self.embed_init_std}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint-every must be ≥ 1, got {self.checkpoint_every}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda, got '{self.device}'")

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (``betas`` as a list)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The config ``to_dict`` wrote (unknown keys ignored: a newer toolkit's fields).

        A stored config must name the fields that define the run (``REQUIRED_FIELDS``: a default
        in their place would silently make it another run) and every value must have its field's
        JSON type; otherwise ``ConfigError``.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a JSON object, got {type(data).__name__}")
        missing = [k for k in REQUIRED_FIELDS if k not in data]
        if missing:
            raise ConfigError(f"training config is missing {', '.join(map(repr, missing))}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key in fields and not _json_type_ok(value, fields[key].type):
                raise ConfigError(f"training config field '{key}' has the wrong type "
                                  f"({type(value).__name__}: {value!r:.40})")
        return cls(**{k: v for k, v in data.items() if k in fields})

    def same_run(self, other: "TrainConfig") -> list[str]:
        """Fields (other than device and steps) in which two configs differ."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(k for k in a if k not in RESUMABLE_FIELDS and a[k] != b.get(k))
