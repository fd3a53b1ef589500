"""Exact activation patching of every attention head's output (``hook_z``), batched.

Denoising (the default): run the corrupted prompts, and for one head at a time (and, with
``by_position``, one position at a time) put back that head's ``z`` from the clean run; the
metric says how much of the clean behaviour that one activation restores. Noising swaps the roles.
The numbers equal TransformerLens' ``patching.get_act_patch_attn_head_out_all_pos`` /
``..._by_pos`` with ``patching_metric = lambda logits: metric(logits).mean()``, but every patch
rides in one batched forward that starts at the patched layer (see ``batched.py``) instead of a
full forward per index.
"""

from typing import Callable

import torch
from jaxtyping import Int

from .batched import base_run, run_patched
from .data import SequenceMetric
from .result import DIRECTIONS, PatchingResult, gap_notes, normalised_effect


def head_masks(n_layers: int, n_pos: int, n_heads: int, *,
               by_position: bool = False, layer: int | None = None) -> torch.Tensor:
    """One copy per head (all positions), or per (layer, pos, head) in TransformerLens' order.

    ``layer`` keeps only that layer's copies (masks grow as copies², so by-position patching of a
    big model builds them one layer at a time).
    """
    layers = range(n_layers) if layer is None else [layer]
    per_layer = n_heads * (n_pos if by_position else 1)
    m = torch.zeros(len(layers), per_layer, n_layers, n_pos, n_heads, dtype=torch.bool)
    heads = torch.arange(n_heads)
    for i, l in enumerate(layers):
        if by_position:
            pos = torch.arange(n_pos).repeat_interleave(n_heads)
            m[i, torch.arange(per_layer), l, pos, heads.repeat(n_pos)] = True
        else:
            m[i, heads, l, :, heads] = True
    return m.reshape(len(layers) * per_layer, n_layers, n_pos, n_heads)


def check_direction(direction: str) -> None:
    from .heads import HeadSpecError

    if direction not in DIRECTIONS:
        raise HeadSpecError(f"unknown direction '{direction}'; choose one of {', '.join(DIRECTIONS)}")


def patch_heads(model, clean: Int[torch.Tensor, "batch pos"], corrupted: Int[torch.Tensor, "batch pos"],
                metric: SequenceMetric, *, by_position: bool = False,
                direction: str = "denoising", metric_name: str | None = None,
                max_rows: int | None = None,
                progress: Callable[[int], None] | None = None) -> PatchingResult:
    """Patch each head's ``hook_z`` (all positions, and per position with ``by_position``)."""
    check_direction(direction)
    device = model.cfg.device
    clean, corrupted = clean.to(device), corrupted.to(device)
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupted {tuple(corrupted.shape)} differ in shape")
    clean_run = base_run(model, clean, resid=direction == "noising")
    corrupted_run = base_run(model, corrupted, resid=direction == "denoising")
    base, src = (corrupted_run, clean_run) if direction == "denoising" else (clean_run, corrupted_run)
    clean_value = float(metric(clean_run.logits).mean())
    corrupted_value = float(metric(corrupted_run.logits).mean())

    L, H = model.cfg.n_layers, model.cfg.n_heads
    n_pos = clean.shape[1]
    def run(masks):
        return run_patched(model, base, src.z, masks, [metric], max_rows=max_rows,
                           progress=progress)[:, 0].cpu()

    patched = _fused_by_head(model, base, src, metric, progress)
    if patched is None:
        patched = run(head_masks(L, n_pos, H)).reshape(L, H)
    effects = normalised_effect(patched, clean_value, corrupted_value, direction)
    position_effects = None
    if by_position:
        by_pos = _fused_by_position(model, base, src, metric, progress)
        if by_pos is None:
            by_pos = torch.stack([run(head_masks(L, n_pos, H, by_position=True, layer=l))
                                  for l in range(L)]).reshape(L, n_pos, H)
        position_effects = normalised_effect(by_pos, clean_value, corrupted_value, direction)
    return PatchingResult(
        metric=metric_name or getattr(metric, "name", "metric"), method="exact", direction=direction,
        clean_metric=clean_value, corrupted_metric=corrupted_value, patched=patched,
        effects=effects, position_effects=position_effects,
        tokens=clean[0].tolist() if by_position else None,
        notes=gap_notes(clean_value, corrupted_value))


def _fusable(model, base) -> bool:
    from ..fast_forward import has_hooks, unsupported_reason

    return (unsupported_reason(model) is None and not has_hooks(model)
            and len(base.resid_pre) == model.cfg.n_layers)


@torch.no_grad()
def _fused_by_head(model, base, src, metric: SequenceMetric,
                   progress: Callable[[int], None] | None) -> torch.Tensor | None:
    """Every head patched at all positions through the fused forward (``None``: not applicable).

    Only the patched head's output changes in its own layer, so the ``H`` copies of a layer start
    from the base residual entering it with the patched ``z`` and continue from the next layer.
    """
    from ..fast_forward import fused_logits_from, resid_after_z

    if not _fusable(model, base):
        return None
    L, H = model.cfg.n_layers, model.cfg.n_heads
    B, n_pos = base.tokens.shape
    device = base.logits.device
    one_head = torch.eye(H, dtype=torch.bool, device=device)
    out = torch.empty(L, H)
    for layer in range(L):
        z = torch.where(one_head[:, None, None, :, None], src.z[layer].to(device)[None],
                        base.z[layer][None])  # [copy, batch, pos, head, d_head]
        x = resid_after_z(model, layer, base.resid_pre[layer].repeat(H, 1, 1),
                          z.reshape(H * B, n_pos, H, -1))
        logits = fused_logits_from(model, x, layer + 1).view(H, B, n_pos, -1)
        out[layer] = metric(logits.to(base.logits.dtype)).float().mean(-1).cpu()
        if progress is not None:
            progress(H)
    return out


@torch.no_grad()
def _fused_by_position(model, base, src, metric: SequenceMetric,
                       progress: Callable[[int], None] | None) -> torch.Tensor | None:
    """Every (layer, position, head) patch through the fused forward; ``None`` where it does not apply.

    Patching head ``h``'s ``z`` at position ``p`` of layer ``l`` changes nothing before ``p``
    (causal attention) and nothing in layer ``l`` but that head's output. So the ``H`` copies of
    one (layer, position) start from the base run's residual entering layer ``l``, recompute only
    positions ``≥ p`` (earlier keys and values come from the base run), and take the logits before
    ``p`` from the base run. Same numbers as the generic engine (checked in tests), far fewer FLOPs.
    """
    from ..fast_forward import fused_suffix_logits, resid_after_z

    if not _fusable(model, base):
        return None
    L, H = model.cfg.n_layers, model.cfg.n_heads
    B, n_pos = base.tokens.shape
    device = base.logits.device
    one_head = torch.eye(H, dtype=torch.bool, device=device)  # copy c patches head c
    out = torch.empty(L, n_pos, H)
    for layer in range(L):
        src_z, base_z = src.z[layer].to(device), base.z[layer]
        for p in range(n_pos):
            n = n_pos - p
            mask = torch.zeros(H, n, H, dtype=torch.bool, device=device)
            mask[:, 0] = one_head
            z = torch.where(mask[:, None, :, :, None], src_z[None, :, p:], base_z[None, :, p:])
            x = resid_after_z(model, layer, base.resid_pre[layer][:, p:].repeat(H, 1, 1),
                              z.reshape(H * B, n, H, -1))
            suffix = fused_suffix_logits(model, x, layer + 1, base.resid_pre, p)
            logits = torch.cat([base.logits[:, :p].expand(H, -1, -1, -1),
                                suffix.view(H, B, n, -1).to(base.logits.dtype)], dim=2)
            out[layer, p] = metric(logits).float().mean(-1).cpu()
            if progress is not None:
                progress(H)
    return out


def n_patch_copies(model, n_pos: int, by_position: bool) -> int:
    """How many patched copies ``patch_heads`` runs (for progress bars)."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    return L * H * (1 + (n_pos if by_position else 0))
