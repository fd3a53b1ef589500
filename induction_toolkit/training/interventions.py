"""Interventions while a model trains: ablate a head's output or clamp its attention pattern.

Singh et al. 2024 ("What needs to go right for an induction head?") call this *artificial
optogenetics*: change what one head does during training and watch what the rest of the model
learns. Each intervention is a TransformerLens hook, active for the training steps
``from_step ≤ step ≤ to_step`` (and for the evaluations at those steps, so the metrics describe the
function being trained):

- ``ablate`` (``zero``): the head's ``hook_z`` is set to exactly 0, so it writes nothing to the
  residual stream and none of its weights receive a gradient;
- ``ablate`` (``mean``): the head's ``hook_z`` is replaced by its mean over the batch at each
  position: it keeps its average (position-dependent) output but carries no information about the
  tokens of one sequence. The mean stays in the autograd graph, so the head can still learn that
  average;
- ``clamp`` to a target pattern: the head's ``hook_pattern`` row for every query is replaced by
  the target (``previous``: the previous token, position 0 for itself; ``bos``: position 0;
  ``uniform``: every position up to the query; ``induction``: the tokens right after earlier
  occurrences of the query's token, equally split, position 0 when there is none). The head's
  query and key weights then get no gradient; its value/output weights learn freely.

The fused training forward has no hook points: whenever an intervention is active the training
seam sees hooks and runs TransformerLens' hooked forward (``fast_forward.FastForward.loss``), so
both settings of ``TrainConfig.loss_fn`` train the same function (tests/test_interventions.py).
Interventions are stored in the run's config (``TrainConfig.interventions``); checkpoints hold
the plain weights, so analysing a checkpoint measures the model *without* the intervention.
Guide: docs/interventions.md.
"""

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from ..errors import ConfigError, HeadSpecError

ABLATE_MODES = ("zero", "mean")
CLAMP_TARGETS = ("previous", "induction", "uniform", "bos")
_HEAD = re.compile(r"^L(\d+)H(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Intervention:
    """One head's intervention: ``kind`` ablate (mode zero/mean) or clamp (mode = target pattern),
    active for training steps ``from_step ≤ step ≤ to_step`` (``to_step`` None: to the end)."""

    kind: str
    layer: int
    head: int
    mode: str
    from_step: int = 0
    to_step: int | None = None

    def __post_init__(self) -> None:
        modes = {"ablate": ABLATE_MODES, "clamp": CLAMP_TARGETS}
        if self.kind not in modes:
            raise ConfigError(f"intervention kind must be ablate or clamp, got '{self.kind}'")
        if self.mode not in modes[self.kind]:
            raise ConfigError(f"{self.kind} L{self.layer}H{self.head}: '{self.mode}' is not one of "
                              f"{', '.join(modes[self.kind])}")
        if self.from_step < 0 or (self.to_step is not None and self.to_step < self.from_step):
            raise ConfigError(f"interventions need 0 ≤ from-step ≤ to-step, got {self.from_step}"
                              f"–{self.to_step}")

    @property
    def label(self) -> str:
        """``L0H2 ablate=zero`` / ``L1H0 clamp=induction``, plus the step window when bounded."""
        window = "" if self.from_step == 0 and self.to_step is None else \
            f" steps {self.from_step}–{'end' if self.to_step is None else self.to_step}"
        return f"L{self.layer}H{self.head} {self.kind}={self.mode}{window}"

    def active(self, step: int) -> bool:
        """Whether the intervention applies at training step (or evaluation step) ``step``."""
        return self.from_step <= step and (self.to_step is None or step <= self.to_step)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in ``config.json`` under ``interventions``."""
        return {"kind": self.kind, "layer": self.layer, "head": self.head, "mode": self.mode,
                "from_step": self.from_step, "to_step": self.to_step}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Intervention":
        """The intervention ``to_dict`` wrote."""
        try:
            return cls(kind=data["kind"], layer=int(data["layer"]), head=int(data["head"]),
                       mode=data["mode"], from_step=int(data.get("from_step", 0)),
                       to_step=None if data.get("to_step") is None else int(data["to_step"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"not an intervention: {data!r}") from e


def parse_interventions(ablate: list[str] | None = None, clamp: list[str] | None = None, *,
                        from_step: int = 0, to_step: int | None = None,
                        n_layers: int | None = None, n_heads: int | None = None) -> list[Intervention]:
    """Command-line specs → interventions.

    Each ``ablate`` item is a comma-separated list of heads, each optionally ``=zero``/``=mean``
    (default zero): ``"L0H2,L0H1=mean"``. Each ``clamp`` item is a comma-separated list of
    ``HEAD=TARGET``: ``"L0H2=previous,L1H0=induction"``. Heads are checked against ``n_layers`` ×
    ``n_heads`` when given; one head may not get two interventions.
    """
    out: list[Intervention] = []
    for kind, items, default in (("ablate", ablate or [], "zero"), ("clamp", clamp or [], None)):
        for item in items:
            parts = item.split(",")
            if not item.strip() or any(not p.strip() for p in parts):
                raise HeadSpecError(f"'{item}' is not a list of heads; write e.g. L0H2,L0H1"
                                    + ("=previous" if kind == "clamp" else ""))
            for part in parts:
                head_spec, sep, mode = part.strip().partition("=")
                if not sep:
                    if default is None:
                        raise HeadSpecError(f"--clamp-pattern '{part.strip()}' needs a target: "
                                            f"HEAD=TARGET, TARGET one of {', '.join(CLAMP_TARGETS)}")
                    mode = default
                layer, head = _parse_head(head_spec, n_layers, n_heads)
                out.append(Intervention(kind, layer, head, mode.strip().lower(), from_step, to_step))
    seen: set[tuple[int, int]] = set()
    for iv in out:
        if (iv.layer, iv.head) in seen:
            raise HeadSpecError(f"L{iv.layer}H{iv.head} is given more than one intervention")
        seen.add((iv.layer, iv.head))
    return out


def _parse_head(spec: str, n_layers: int | None, n_heads: int | None) -> tuple[int, int]:
    m = _HEAD.match(spec.strip())
    if not m:
        raise HeadSpecError(f"'{spec}' is not a head; write L<layer>H<head>, e.g. L0H2")
    layer, head = int(m.group(1)), int(m.group(2))
    if n_layers is not None and layer >= n_layers:
        raise HeadSpecError(f"L{layer}H{head}: layer {layer} is out of range; the model has "
                            f"{n_layers} layers (0–{n_layers - 1})")
    if n_heads is not None and head >= n_heads:
        raise HeadSpecError(f"L{layer}H{head}: head {head} is out of range; the model has "
                            f"{n_heads} heads per layer (0–{n_heads - 1})")
    return layer, head


def target_pattern(target: str, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos pos"]:
    """The clamp target ``[batch, query, key]``: causal rows that sum to 1 (float32)."""
    n_batch, n_pos = tokens.shape
    device = tokens.device
    q = torch.arange(n_pos, device=device)
    causal = q[None, :] <= q[:, None]  # [query, key]
    if target == "previous":
        pat = torch.zeros(n_pos, n_pos, device=device)
        pat[q, (q - 1).clamp(min=0)] = 1.0
    elif target == "bos":
        pat = torch.zeros(n_pos, n_pos, device=device)
        pat[:, 0] = 1.0
    elif target == "uniform":
        pat = causal.float() / causal.sum(-1, keepdim=True)
    elif target == "induction":
        # key k is a match for query i when the token before k equals token i (1 ≤ k ≤ i)
        before = torch.cat([tokens.new_full((n_batch, 1), -1), tokens[:, :-1]], dim=1)
        match = (before[:, None, :] == tokens[:, :, None]) & causal[None]
        none = ~match.any(-1)
        match[..., 0] |= none
        return match.float() / match.sum(-1, keepdim=True)
    else:
        raise ConfigError(f"unknown clamp target '{target}'; one of {', '.join(CLAMP_TARGETS)}")
    return pat[None].expand(n_batch, n_pos, n_pos)


def _ablate_hook(head: int, mode: str) -> Callable:
    def hook(z: torch.Tensor, hook) -> torch.Tensor:
        z = z.clone()
        if mode == "zero":
            z[:, :, head] = 0.0
        else:
            z[:, :, head] = z[:, :, head].mean(0, keepdim=True).expand_as(z[:, :, head])
        return z
    return hook


def _clamp_hook(head: int, target: str, tokens: dict[str, torch.Tensor]) -> Callable:
    def hook(pattern: torch.Tensor, hook) -> torch.Tensor:
        if target == "induction" and "tokens" not in tokens:
            raise ConfigError("an induction clamp needs the input tokens (run the model on tokens)")
        toks = tokens.get("tokens")
        if toks is None:  # position-only targets need the shape alone
            toks = torch.zeros(pattern.shape[0], pattern.shape[-1], dtype=torch.long,
                               device=pattern.device)
        pattern = pattern.clone()
        pattern[:, head] = target_pattern(target, toks.to(pattern.device)).to(pattern.dtype)
        return pattern
    return hook


class TrainingInterventions:
    """A run's interventions on one model; ``applied(step)`` attaches those active at ``step``."""

    def __init__(self, model, interventions: list[Intervention] | list[dict] | None):
        self.model = model
        self.interventions = [iv if isinstance(iv, Intervention) else Intervention.from_dict(iv)
                              for iv in interventions or []]
        cfg = model.cfg
        for iv in self.interventions:
            if iv.layer >= cfg.n_layers or iv.head >= cfg.n_heads:
                raise HeadSpecError(f"L{iv.layer}H{iv.head} is outside the model ({cfg.n_layers} "
                                    f"layers × {cfg.n_heads} heads)")

    def __bool__(self) -> bool:
        return bool(self.interventions)

    def active(self, step: int) -> list[Intervention]:
        """The interventions that apply at ``step``."""
        return [iv for iv in self.interventions if iv.active(step)]

    def hooks(self, step: int, tokens: dict[str, torch.Tensor]) -> list[tuple[str, Callable]]:
        """``(hook name, function)`` pairs for the interventions active at ``step``."""
        out = []
        for iv in self.active(step):
            if iv.kind == "ablate":
                out.append((f"blocks.{iv.layer}.attn.hook_z", _ablate_hook(iv.head, iv.mode)))
            else:
                out.append((f"blocks.{iv.layer}.attn.hook_pattern",
                            _clamp_hook(iv.head, iv.mode, tokens)))
        return out

    @contextlib.contextmanager
    def applied(self, step: int) -> Iterator[None]:
        """Within the block, every forward of the model runs the interventions active at ``step``."""
        tokens: dict[str, torch.Tensor] = {}
        hooks = self.hooks(step, tokens)
        if not hooks:
            yield
            return

        def remember(module, args):
            tokens["tokens"] = args[0]

        handle = self.model.embed.register_forward_pre_hook(remember)
        try:
            with self.model.hooks(fwd_hooks=hooks):
                yield
        finally:
            handle.remove()
