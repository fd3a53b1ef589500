"""Path patching: the effect of one sender head *through one receiver head's q, k or v input only*.

Algorithm (direct path; Wang et al. 2022's path patching with the other heads frozen):

1. Run the base and the source prompts once, caching ``hook_z`` of the sender layer and
   ``hook_resid_pre`` of the receiver layer.
2. The sender's change to the residual stream is ``Δ = (z_source − z_base)[sender] · W_O[sender]``
   at every position.
3. Run the base prompts from the receiver's layer with TransformerLens' split q/k/v inputs
   (``use_split_qkv_input``): the receiver's query (or key, or value) input alone becomes
   ``resid_pre + Δ``; its LayerNorm is applied afterwards, as in the model. Every other head and
   every other input of the receiver keeps its base value, so heads between sender and receiver are
   frozen and the sender reaches the receiver by no other route; everything after the receiver runs
   normally, carrying the receiver's change to the logits.

The three inputs run as three copies in one forward. The default direction is *noising*: base =
clean, source = corrupted, effect = ``(clean − patched) / (clean − corrupted)``, i.e. how much of the
clean behaviour dies when only this path sees the corrupted sender. Denoising the key alone cannot
restore an induction head on these prompts, because its value input still reads the corrupted
tokens it would copy; noising tests each input on its own. Denoising is available for symmetry.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InductionToolkitError
from ..scores import head_label
from .batched import base_run, repeat_rows, supports_start_at_layer
from .data import ModelInput, SequenceMetric
from .heads import Head
from .patching import check_direction
from .result import gap_notes, normalised_effect

QKV = ("q", "k", "v")


@dataclass
class PathPatchingResult:
    """One sender→receiver path's effect on the metric through each receiver input (q, k, v)."""

    sender: Head
    receiver: Head
    metric: str
    direction: str
    clean_metric: float
    corrupted_metric: float
    effects: dict[str, float]  # q / k / v → normalised effect
    patched: dict[str, float]  # q / k / v → metric with the path patched
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def dominant(self) -> str:
        """The receiver input (``q``, ``k`` or ``v``) with the largest absolute normalised effect."""
        return max(QKV, key=lambda x: abs(self.effects[x]))

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (effects normalised: 1 = the whole clean–corrupted gap)."""
        return {
            "path": f"{head_label(*self.sender)}:{head_label(*self.receiver)}",
            "sender": {"layer": self.sender[0], "head": self.sender[1], "label": head_label(*self.sender)},
            "receiver": {"layer": self.receiver[0], "head": self.receiver[1],
                         "label": head_label(*self.receiver)},
            "metric": self.metric, "method": "path", "direction": self.direction,
            "clean_metric": self.clean_metric, "corrupted_metric": self.corrupted_metric,
            "inputs": [{"input": x, "effect": self.effects[x], "patched_metric": self.patched[x]}
                       for x in QKV],
            "dominant": self.dominant,
            "data": self.data, "notes": list(self.notes),
        }

    def to_table(self, title: str | None = None):
        """A rich table of each receiver input's normalised effect and patched metric."""
        from rich.table import Table

        table = Table(title=title, header_style="bold")
        table.add_column("receiver input")
        table.add_column("effect", justify="right")
        table.add_column(f"patched {self.metric}", justify="right")
        for x in QKV:
            table.add_row(x, f"{self.effects[x]:+.3f}", f"{self.patched[x]:.3f}",
                          style="bold green" if x == self.dominant else None)
        return table


@contextmanager
def split_qkv_input(model):
    """Temporarily give every head its own q/k/v input hook (restored even on error)."""
    cfg = model.cfg
    if not hasattr(cfg, "use_split_qkv_input") or "blocks.0.hook_q_input" not in model.hook_dict:
        raise InductionToolkitError("path patching needs a TransformerLens model with split q/k/v "
                                    "input hooks (blocks.L.hook_q_input)")
    old = cfg.use_split_qkv_input
    cfg.use_split_qkv_input = True
    try:
        yield
    finally:
        cfg.use_split_qkv_input = old


@torch.no_grad()
def path_patch(model, clean: ModelInput, corrupted: ModelInput,
               metric: SequenceMetric, sender: Head, receiver: Head, *,
               direction: str = "noising", metric_name: str | None = None) -> PathPatchingResult:
    """The sender → receiver path through each of the receiver's q, k and v inputs."""
    check_direction(direction)
    (ls, hs), (lr, hr) = sender, receiver
    if ls >= lr:
        raise InductionToolkitError(f"path {head_label(*sender)}:{head_label(*receiver)}: the sender "
                                    "must sit in an earlier layer than the receiver")
    n_kv = getattr(model.cfg, "n_key_value_heads", None)
    if n_kv is not None and n_kv != model.cfg.n_heads:
        raise InductionToolkitError("path patching does not support grouped-query attention yet "
                                    "(a key/value input is shared by several heads)")
    device = model.cfg.device
    clean, corrupted = clean.to(device), corrupted.to(device)
    clean_run = base_run(model, clean, resid=direction == "noising")
    corrupted_run = base_run(model, corrupted, resid=direction == "denoising")
    base, src = (corrupted_run, clean_run) if direction == "denoising" else (clean_run, corrupted_run)
    clean_value = float(metric(clean_run.logits).mean())
    corrupted_value = float(metric(corrupted_run.logits).mean())

    W_O = model.blocks[ls].attn.W_O[hs]  # [d_head, d_model]
    delta = (src.z[ls][:, :, hs] - base.z[ls][:, :, hs]) @ W_O  # [batch, pos, d_model]
    B = clean.shape[0]
    C = len(QKV)
    hooks = []
    for c, x in enumerate(QKV):
        def hook(inp, hook, c=c):
            # inp: [C·B, pos, head_index, d_model]
            out = inp.clone().view(C, B, *inp.shape[1:])
            out[c, :, :, hr] += delta.to(out.dtype)
            return out.view_as(inp)
        hooks.append((f"blocks.{lr}.hook_{x}_input", hook))
    with split_qkv_input(model):
        if supports_start_at_layer(model) and lr in base.resid_pre:
            logits = model.run_with_hooks(base.resid_pre[lr].repeat(C, 1, 1), start_at_layer=lr,
                                          fwd_hooks=hooks)
        else:
            logits = model.run_with_hooks(repeat_rows(base.tokens, C), fwd_hooks=hooks)
    values = metric(logits.view(C, B, *logits.shape[1:])).float().mean(-1).cpu()
    effects = normalised_effect(values, clean_value, corrupted_value, direction)
    return PathPatchingResult(
        sender=sender, receiver=receiver, metric=metric_name or getattr(metric, "name", "metric"),
        direction=direction, clean_metric=clean_value, corrupted_metric=corrupted_value,
        effects={x: float(effects[i]) for i, x in enumerate(QKV)},
        patched={x: float(values[i]) for i, x in enumerate(QKV)},
        notes=gap_notes(clean_value, corrupted_value))
