"""Head ablation: replace a head's output (``hook_z``) and watch the loss on repeated tokens.

Methods, each replacing ``z`` of the ablated head at every position:

- ``zero``: ``z = 0`` (the head writes only its bias ``b_O``);
- ``mean``: ``z`` at position ``p`` = its mean over the batch at ``p`` (per-position means, as
  ``docs/causal.md`` explains): one mean over all positions would hand every position BOS's and the first
  copy's average output, an input the head never produces there, and count that shift as the
  head's effect;
- ``resample``: ``z`` from another sequence of the batch (a seeded derangement), taken from that
  sequence's unablated run.

Patching ``hook_z`` is the same as patching the head's ``hook_result`` (``z W_O``, linear) and needs
no ``use_attn_result``. The loss is reported on the repeated half (targets from the *second* token of
copy 2 on: ``data.repeated_query_positions``; the first token of a copy follows a token not seen
before, so no induction head can predict it) and on the first half (positions predicting the rest
of the first copy: a control no induction head can help). Every head is ablated in one batched forward
per layer, starting at that layer (see ``batched.py``).

What is measured is an :class:`AblationMetrics`: a log-probability reported as the loss, a control
reported as the second loss, and any extra per-sequence metrics. :func:`ablate_heads` builds the
repeated-token one; a task with other inputs supplies its own to :func:`ablate_heads_on` (Reddy's
run: loss on the in-context set, the in-weights set as the control, both accuracies;
``induction_toolkit.analysis_data``).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from jaxtyping import Int

from ..errors import ConfigError
from ..scores import head_label
from ..tasks.repeated import RepeatedTokensConfig
from .batched import base_run, run_patched
from .data import (ModelInput, NextTokenLogProb, SequenceMetric, first_half_query_positions,
                   repeated_query_positions)
from .heads import Head

AblationMethod = Literal["zero", "mean", "resample"]
ABLATION_METHODS: tuple[str, ...] = get_args(AblationMethod)


@dataclass
class AblationResult:
    """Each ablated head's repeated-half and first-half loss (nats) against the unablated baseline."""

    method: str
    baseline_loss: float  # repeated half, nothing ablated
    baseline_first_half_loss: float
    heads: list[dict[str, Any]]  # one row per ablated head
    joint: dict[str, Any] | None = None  # the set ablated together, when asked
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # what the two losses are (table headings), and the unablated value of each extra metric
    labels: tuple[str, str] = ("repeated-half loss", "first-half loss")
    baseline_extra: dict[str, float] = field(default_factory=dict)

    def row(self, layer: int, head: int) -> dict[str, Any]:
        """The result row of head ``(layer, head)``; KeyError when it was not ablated."""
        for r in self.heads:
            if (r["layer"], r["head"]) == (layer, head):
                return r
        raise KeyError(head_label(layer, head))

    def ranking(self) -> list[dict[str, Any]]:
        """The head rows by loss increase on the repeated half (nats), largest first."""
        return sorted(self.heads, key=lambda r: r["delta_loss"], reverse=True)

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (losses in nats per predicted token)."""
        out: dict[str, Any] = {
            "method": self.method,
            "baseline_loss": self.baseline_loss,
            "baseline_first_half_loss": self.baseline_first_half_loss,
            "heads": [dict(r) for r in self.heads],
            "ranking": [r["label"] for r in self.ranking()],
        }
        if self.joint is not None:
            out["joint"] = dict(self.joint)
        out.update({f"baseline_{k}": v for k, v in self.baseline_extra.items()})
        out["data"] = self.data
        out["notes"] = list(self.notes)
        return out

    def to_table(self, title: str | None = None):
        """A rich table of each head's losses and loss increases (nats), baseline first."""
        from rich.table import Table

        table = Table(title=title, header_style="bold")
        extra = list(self.baseline_extra)
        for name in ("head", self.labels[0], "Δ loss", self.labels[1], f"Δ {self.labels[1]}",
                     *(k.replace("_accuracy", " acc").replace("_", " ") for k in extra)):
            table.add_column(name, justify="left" if name == "head" else "right")
        table.add_row("none (baseline)", f"{self.baseline_loss:.3f}", "",
                      f"{self.baseline_first_half_loss:.3f}", "",
                      *(f"{self.baseline_extra[k]:.3f}" for k in extra), style="dim")
        top = self.ranking()[0]["label"] if self.heads else None

        def cells(r: dict[str, Any]) -> list[str]:
            return [f"{r['loss']:.3f}", f"{r['delta_loss']:+.3f}", f"{r['first_half_loss']:.3f}",
                    f"{r['first_half_delta_loss']:+.3f}", *(f"{r[k]:.3f}" for k in extra)]

        for r in self.heads:
            table.add_row(r["label"], *cells(r), style="bold green" if r["label"] == top else None)
        if self.joint is not None:
            table.add_row("+".join(self.joint["heads"]), *cells(self.joint), style="bold")
        return table


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation with no fixed point: every sequence reads another's activations."""
    p = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[p] = p.roll(-1)
    return perm


def ablation_source(z: dict[int, torch.Tensor], method: str, *, seed: int = 0) -> dict[int, torch.Tensor]:
    """What each layer's ``z`` is replaced by, from the unablated run's ``z``.

    ``zero``: ``[1, 1, head, d_head]`` zeros; ``mean``: ``[1, pos, head, d_head]``, the batch mean at
    each position; ``resample``: ``[batch, pos, head, d_head]``, another sequence's ``z``.
    """
    if method == "zero":
        return {l: torch.zeros_like(t[:1, :1]) for l, t in z.items()}
    if method == "mean":
        return {l: t.mean(dim=0, keepdim=True) for l, t in z.items()}  # [1, pos, head, d_head]
    if method == "resample":
        n = next(iter(z.values())).shape[0]
        if n < 2:
            raise ConfigError("resample ablation needs a batch of at least 2 sequences")
        perm = derangement(n, torch.Generator().manual_seed(seed)).to(next(iter(z.values())).device)
        return {l: t[perm] for l, t in z.items()}
    raise ConfigError(f"unknown ablation method '{method}'; choose one of {', '.join(ABLATION_METHODS)}")


@dataclass(frozen=True)
class AblationMetrics:
    """What an ablation measures, each a per-sequence metric (``data.SequenceMetric``).

    ``target``: a log-probability the circuit should carry (reported negated, as ``loss``);
    ``control``: one it should not (reported negated, as ``first_half_loss``); ``extra``: more
    metrics reported as they are (e.g. accuracies), each under its own key in every row.
    ``labels`` name the two losses in tables; ``data`` describes the inputs (``--json``'s ``data``).
    """

    target: SequenceMetric
    control: SequenceMetric
    extra: dict[str, SequenceMetric] = field(default_factory=dict)
    labels: tuple[str, str] = ("repeated-half loss", "first-half loss")
    data: dict[str, Any] = field(default_factory=dict)


def repeated_metrics(tokens: Int[torch.Tensor, "batch pos"], task: RepeatedTokensConfig, *,
                     seed: int = 0) -> AblationMetrics:
    """Repeated-token prompts: loss on the repeated half, the first half as the control."""
    if task.min_seq_len is not None:
        # the repeated half's query positions are read off task.seq_len: one length per batch
        raise ConfigError("ablation needs one segment length per batch (min_seq_len is set)")
    positions = repeated_query_positions(task)
    data = {"task": "repeated", "seq_len": task.seq_len, "repeats": task.repeats,
            "batch": int(tokens.shape[0]), "seed": seed, "bos_token_id": task.bos_token_id,
            "n_tokens": int(tokens.shape[1]),
            "repeated_query_positions": [int(positions[0]), int(positions[-1])]}
    return AblationMetrics(NextTokenLogProb(tokens, positions, "repeated_logprob"),
                           NextTokenLogProb(tokens, first_half_query_positions(task), "first_half_logprob"),
                           data=data)


def ablate_heads(model, tokens: Int[torch.Tensor, "batch pos"], task: RepeatedTokensConfig, *,
                 method: str = "zero", heads: list[Head] | None = None, joint: bool = False,
                 seed: int = 0, max_rows: int | None = None,
                 progress: Callable[[int], None] | None = None) -> AblationResult:
    """Ablate each head in ``heads`` (default: every head) alone, and the set together if ``joint``."""
    if method not in ABLATION_METHODS:
        raise ConfigError(f"unknown ablation method '{method}'; choose one of {', '.join(ABLATION_METHODS)}")
    return ablate_heads_on(model, tokens, repeated_metrics(tokens, task, seed=seed), method=method,
                           heads=heads, joint=joint, seed=seed, max_rows=max_rows, progress=progress)


def ablate_heads_on(model, inputs: ModelInput, metrics: AblationMetrics, *, method: str = "zero",
                    heads: list[Head] | None = None, joint: bool = False, seed: int = 0,
                    max_rows: int | None = None,
                    progress: Callable[[int], None] | None = None) -> AblationResult:
    """``ablate_heads`` on any inputs the model takes (token ids or vectors), measuring ``metrics``."""
    if method not in ABLATION_METHODS:
        raise ConfigError(f"unknown ablation method '{method}'; choose one of {', '.join(ABLATION_METHODS)}")
    device = model.cfg.device
    inputs = inputs.to(device)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    n_pos = inputs.shape[1]
    if heads is None:
        heads = [(l, h) for l in range(L) for h in range(H)]
    names = list(metrics.extra)
    fns = [metrics.target, metrics.control, *metrics.extra.values()]

    run = base_run(model, inputs)
    source = ablation_source(run.z, method, seed=seed)
    masks = torch.zeros(len(heads) + int(joint), L, n_pos, H, dtype=torch.bool)
    for i, (l, h) in enumerate(heads):
        masks[i, l, :, h] = True
        if joint:
            masks[-1, l, :, h] = True
    values = run_patched(model, run, source, masks, fns, max_rows=max_rows, progress=progress).cpu()
    base = [float(f(run.logits).float().mean()) for f in fns]
    base_loss, base_first = -base[0], -base[1]

    def row(i: int) -> dict[str, Any]:
        loss, first_loss = -float(values[i, 0]), -float(values[i, 1])
        out = {"loss": loss, "delta_loss": loss - base_loss, "first_half_loss": first_loss,
               "first_half_delta_loss": first_loss - base_first}
        for j, name in enumerate(names):
            out[name] = float(values[i, 2 + j])
            out[f"delta_{name}"] = out[name] - base[2 + j]
        return out

    rows = [{"layer": l, "head": h, "label": head_label(l, h), **row(i)} for i, (l, h) in enumerate(heads)]
    joint_row = {"heads": [head_label(l, h) for l, h in heads], **row(len(heads))} if joint else None
    data = dict(metrics.data)
    notes = []
    if method == "mean":
        data["mean_over"] = "batch, per position"
        notes.append(f"mean ablation: each position's z replaced by its mean over the batch of "
                     f"{int(inputs.shape[0])} at that position")
    return AblationResult(method, base_loss, base_first, rows, joint_row, data=data, notes=notes,
                          labels=metrics.labels,
                          baseline_extra={n: base[2 + j] for j, n in enumerate(names)})
