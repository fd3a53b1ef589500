"""The engine under every exact method: many patched copies of a batch in one forward pass.

A *copy* is the base batch run with some heads' ``hook_z`` replaced, at some positions, by a
source tensor (clean activations, zeros, means, resampled activations). A copy is described by a
boolean mask ``[layer, pos, head]``; copies are stacked along the batch dimension, ``C`` copies of a
batch of ``B`` sequences making one forward of ``C·B`` rows.

Nothing before the first patched layer can change, so each forward starts there
(``start_at_layer``) from the base run's cached ``hook_resid_pre`` instead of from the tokens.
Copies are grouped by that first layer and chunked to a memory budget. Models without
``start_at_layer`` (or with shortformer positions, which it cannot take) run from the tokens.
"""

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float

from ..fast_forward import can_fuse, fused_logits_through_z
from .data import Logits, ModelInput

# Rough float32 elements one forward may hold in logits, patterns and activations (≈ 256 MB).
DEFAULT_BUDGET = 1 << 26


def z_name(layer: int) -> str:
    """The TransformerLens hook name of layer ``layer``'s per-head attention output ``z``."""
    return f"blocks.{layer}.attn.hook_z"


def resid_pre_name(layer: int) -> str:
    """The TransformerLens hook name of the residual stream entering layer ``layer``."""
    return f"blocks.{layer}.hook_resid_pre"


def supports_start_at_layer(model) -> bool:
    """True when ``model.forward`` can start at a cached layer's ``hook_resid_pre`` (no shortformer)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    cfg = getattr(model, "cfg", None)
    return ("start_at_layer" in params
            and getattr(cfg, "positional_embedding_type", None) != "shortformer"
            and resid_pre_name(0) in getattr(model, "hook_dict", {}))


@dataclass
class BaseRun:
    """One forward pass of the base batch, with what patched copies reuse."""

    tokens: ModelInput  # token ids, or input vectors for a model that takes them (Reddy's network)
    logits: Logits
    z: dict[int, Float[torch.Tensor, "batch pos head_index d_head"]]
    resid_pre: dict[int, Float[torch.Tensor, "batch pos d_model"]]


@torch.no_grad()
def base_run(model, tokens: ModelInput, *, resid: bool = True) -> BaseRun:
    """Run ``tokens`` once, caching every layer's ``hook_z`` (and ``hook_resid_pre``)."""
    n_layers = model.cfg.n_layers
    names = {z_name(l) for l in range(n_layers)}
    if resid and supports_start_at_layer(model):
        names |= {resid_pre_name(l) for l in range(n_layers)}
    store: dict[str, torch.Tensor] = {}
    if can_fuse(model):  # the same function as the hooked run, without hook points
        def keep_fused(layer, resid_pre, z):
            store[z_name(layer)] = z
            if resid_pre_name(layer) in names:
                store[resid_pre_name(layer)] = resid_pre
            return z

        logits = fused_logits_through_z(model, tokens, keep_fused)
    else:
        def keep(act, hook):
            store[hook.name] = act.detach()

        logits = model.run_with_hooks(tokens, return_type="logits",
                                      fwd_hooks=[(name, keep) for name in sorted(names)])
    return BaseRun(tokens, logits.detach(),
                   {l: store[z_name(l)] for l in range(n_layers)},
                   {l: store[resid_pre_name(l)] for l in range(n_layers) if resid_pre_name(l) in store})


def repeat_rows(inputs: ModelInput, copies: int) -> torch.Tensor:
    """``copies`` copies of a batch of token ids or input vectors, stacked along the batch."""
    return inputs.repeat(copies, *([1] * (inputs.ndim - 1)))


def rows_per_forward(model, n_pos: int, budget: int = DEFAULT_BUDGET) -> int:
    """How many sequences fit one forward under ``budget`` float elements."""
    cfg = model.cfg
    per_row = n_pos * (cfg.d_vocab_out + cfg.n_heads * (2 * n_pos + 3 * cfg.d_head) + 4 * cfg.d_model)
    return max(1, budget // max(1, per_row))


def _groups(first_layer: list[int], per_chunk: int) -> list[list[int]]:
    """Copy indices grouped by first patched layer, then chunked."""
    out = []
    for layer in sorted(set(first_layer)):
        idx = [i for i, l in enumerate(first_layer) if l == layer]
        out += [idx[s:s + per_chunk] for s in range(0, len(idx), per_chunk)]
    return out


@torch.no_grad()
def run_patched(model, base: BaseRun,
                source: dict[int, Float[torch.Tensor, "#batch #pos head_index d_head"]],
                masks: Bool[torch.Tensor, "copy layer pos head_index"],
                metrics: Sequence[Callable[[torch.Tensor], torch.Tensor]], *,
                max_rows: int | None = None,
                progress: Callable[[int], None] | None = None) -> Float[torch.Tensor, "copy metric"]:
    """The batch-mean of each metric for every patched copy.

    In copy ``c``, head ``h`` of layer ``l`` at position ``p`` reads ``source[l][:, p, h]`` instead of
    its own ``z`` wherever ``masks[c, l, p, h]``. ``source[l]`` may broadcast (e.g. ``[1, 1, H, d]``).
    """
    B, n_pos = base.tokens.shape[:2]
    n_copies = masks.shape[0]
    device = base.logits.device
    masks = masks.to(device)
    active = masks.flatten(2).any(-1)  # [copy, layer]
    n_layers = masks.shape[1]
    first = [int(a.nonzero()[0]) if a.any() else n_layers for a in active]
    rows = max_rows or rows_per_forward(model, n_pos)
    per_chunk = max(1, rows // B)
    start_ok = supports_start_at_layer(model) and bool(base.resid_pre)
    out = torch.empty(n_copies, len(metrics), device=device)

    for chunk in _groups(first, per_chunk):
        C = len(chunk)
        m = masks[chunk]  # [C, layer, pos, head]
        start = first[chunk[0]]
        hooks = []
        for layer in range(start, n_layers):
            if not m[:, layer].any():
                continue
            src = source[layer].to(device)

            def hook(z, hook, m=m[:, layer], src=src):
                zz = z.view(C, B, *z.shape[1:])
                patched = torch.where(m[:, None, :, :, None], src[None].to(z.dtype), zz)
                return patched.view_as(z)

            hooks.append((z_name(layer), hook))
        if start >= n_layers:  # nothing patched: the base run itself
            logits = base.logits.unsqueeze(0).expand(C, *base.logits.shape)
        elif start_ok:
            resid = base.resid_pre[start].repeat(C, 1, 1)
            logits = model.run_with_hooks(resid, start_at_layer=start, fwd_hooks=hooks)
        else:
            logits = model.run_with_hooks(repeat_rows(base.tokens, C), fwd_hooks=hooks)
        logits = logits.reshape(C, B, *logits.shape[1:])
        for j, metric in enumerate(metrics):
            out[chunk, j] = metric(logits).float().mean(-1)
        del logits
        if progress is not None:
            progress(C)
    return out
