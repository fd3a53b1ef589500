"""Exact activation patching of every attention head's output (``hook_z``), batched.

Denoising (the default): run the corrupted prompts, and for one head at a time (and, with
``by_position``, one position at a time) put back that head's ``z`` from the clean run; the
metric says how much of the clean behaviour that one activation restores. Noising swaps the roles.
The numbers equal TransformerLens' ``patching.get_act_patch_attn_head_out_all_pos`` /
``..._by_pos`` with ``patching_metric = lambda logits: metric(logits).mean()``, but no patch pays
for a full forward of its own. Three engines compute them; :func:`choose_engine` picks one, and
the result records it (``data["engine"]``, and ``data["position_engine"]`` with ``by_position``)::

    patch_heads(model, clean, corrupted, metric)
      │  base_run(clean), base_run(corrupted): logits, every layer's z and resid_pre, cached
      ▼
    choose_engine(model, base, by_position)
      │
      ├─ can_fuse(model) and resid_pre cached ─┬─ "fused_by_head"
      │   (a plain HookedTransformer,          │    per layer l: H copies of resid_pre[l], copy h
      │    no hooks attached)                  │    with head h's z from the source run;
      │                                        │    resid_after_z, then fused layers l+1.. → logits
      │                                        │
      │                                        └─ "fused_by_position"
      │                                             per (layer l, position p): H copies of only the
      │                                             positions ≥ p of resid_pre[l]; positions < p
      │                                             give keys/values (and logits) from the base run
      │
      └─ otherwise (hooks, an unsupported ─── "batched"
          config, any hookable model)           copies of the base batch stacked along the batch;
                                                a boolean mask [copy, layer, pos, head] says which z
                                                reads the source; one hooked forward per chunk,
                                                from start_at_layer (batched.run_patched)

Why they agree: each is the hooked forward with ``hook_z`` replaced, rearranged by facts that
hold for every model: (1) nothing before the patched layer depends on the patch, so starting from
the cached ``hook_resid_pre`` changes nothing; (2) inside the patched layer only the patched head's
``z`` differs, and ``resid_after_z`` is the rest of that block; (3) the fused forward computes TL's
function from the same parameters (``fast_forward``, tested against the hooked forward); (4)
attention is causal, so a patch at position ``p`` leaves every position before ``p`` as in the
base run. Tests check each engine against TransformerLens' ``patching`` utilities.
"""

from collections.abc import Callable
from typing import Literal

import torch
from jaxtyping import Float

from ..errors import ConfigError
from ..fast_forward import can_fuse, unsupported_reason
from .batched import BaseRun, base_run, run_patched
from .data import ModelInput, SequenceMetric
from .result import DIRECTIONS, PatchingResult, gap_notes, normalised_effect

Engine = Literal["fused_by_head", "fused_by_position", "batched"]
# What a caller may ask for: the choice below ("auto"), or one family for both tables.
ENGINE_FAMILIES: tuple[str, ...] = ("auto", "fused", "batched")


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
    """Raise ``HeadSpecError`` unless ``direction`` is denoising or noising."""
    from .heads import HeadSpecError

    if direction not in DIRECTIONS:
        raise HeadSpecError(f"unknown direction '{direction}'; choose one of {', '.join(DIRECTIONS)}")


def fused_applies(model, base: BaseRun) -> str | None:
    """Why the fused engines cannot patch ``model`` from ``base``, or ``None`` when they can."""
    if not can_fuse(model):
        return unsupported_reason(model) or "the model has hooks attached"
    if len(base.resid_pre) != model.cfg.n_layers:
        return "the base run did not cache every layer's hook_resid_pre"
    return None


def choose_engine(model, base: BaseRun, *, by_position: bool = False,
                  family: str = "auto") -> Engine:
    """The engine that patches every head of ``model`` (every head × position with ``by_position``).

    ``family="auto"``: the fused engine when it applies, else the batched one. ``"fused"`` insists
    (``ConfigError`` saying why not); ``"batched"`` takes the generic engine.
    """
    if family not in ENGINE_FAMILIES:
        raise ConfigError(f"unknown patching engine '{family}'; choose one of {', '.join(ENGINE_FAMILIES)}")
    if family == "batched":
        return "batched"
    why_not = fused_applies(model, base)
    if why_not is None:
        return "fused_by_position" if by_position else "fused_by_head"
    if family == "fused":
        raise ConfigError(f"the fused patching engine does not apply: {why_not}")
    return "batched"


def run_engine(engine: Engine, model, base: BaseRun, src: BaseRun, metric: SequenceMetric, *,
               by_position: bool = False, max_rows: int | None = None,
               progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Batch-mean metric of every patch by ``engine``: ``[layer, head]``, or ``[layer, pos, head]``
    with ``by_position`` (the fused engines each compute one of the two)."""
    if engine == "fused_by_head":
        return _fused_by_head(model, base, src, metric, progress)
    if engine == "fused_by_position":
        return _fused_by_position(model, base, src, metric, progress)
    return _batched(model, base, src, metric, by_position=by_position, max_rows=max_rows,
                    progress=progress)


def _batched(model, base: BaseRun, src: BaseRun, metric: SequenceMetric, *, by_position: bool,
             max_rows: int | None, progress: Callable[[int], None] | None) -> torch.Tensor:
    """Any hookable model: masked copies through ``batched.run_patched`` (by position, one layer's
    masks at a time, since masks grow as copies²)."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    n_pos = base.tokens.shape[1]

    def run(masks):
        return run_patched(model, base, src.z, masks, [metric], max_rows=max_rows,
                           progress=progress)[:, 0].cpu()

    if not by_position:
        return run(head_masks(L, n_pos, H)).reshape(L, H)
    return torch.stack([run(head_masks(L, n_pos, H, by_position=True, layer=l))
                        for l in range(L)]).reshape(L, n_pos, H)


def patch_heads(model, clean: ModelInput, corrupted: ModelInput,
                metric: SequenceMetric, *, by_position: bool = False,
                direction: str = "denoising", metric_name: str | None = None,
                max_rows: int | None = None, engine: str = "auto",
                progress: Callable[[int], None] | None = None) -> PatchingResult:
    """Patch each head's ``hook_z`` (all positions, and per position with ``by_position``).

    Effects are normalised (1 = the clean metric, 0 = the corrupted one); ``engine`` is ``auto``,
    ``fused`` or ``batched`` (see the module docstring; the one used is in ``data["engine"]``).
    """
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

    def patched_metric(by_pos: bool) -> tuple[str, torch.Tensor]:
        chosen = choose_engine(model, base, by_position=by_pos, family=engine)
        return chosen, run_engine(chosen, model, base, src, metric, by_position=by_pos,
                                  max_rows=max_rows, progress=progress)

    head_engine, patched = patched_metric(False)
    effects = normalised_effect(patched, clean_value, corrupted_value, direction)
    data = {"engine": head_engine}
    position_effects = None
    if by_position:
        data["position_engine"], by_pos = patched_metric(True)
        position_effects = normalised_effect(by_pos, clean_value, corrupted_value, direction)
    return PatchingResult(
        metric=metric_name or getattr(metric, "name", "metric"), method="exact", direction=direction,
        clean_metric=clean_value, corrupted_metric=corrupted_value, patched=patched,
        effects=effects, position_effects=position_effects,
        tokens=clean[0].tolist() if by_position and not clean.is_floating_point() else None, data=data,
        notes=gap_notes(clean_value, corrupted_value))


@torch.no_grad()
def _fused_by_head(model, base: BaseRun, src: BaseRun, metric: SequenceMetric,
                   progress: Callable[[int], None] | None) -> Float[torch.Tensor, "layer head"]:
    """Every head patched at all positions through the fused forward.

    Only the patched head's output changes in its own layer, so the ``H`` copies of a layer start
    from the base residual entering it with the patched ``z`` and continue from the next layer.
    """
    from ..fast_forward import fused_logits_from, resid_after_z

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
def _fused_by_position(model, base: BaseRun, src: BaseRun, metric: SequenceMetric,
                       progress: Callable[[int], None] | None) -> Float[torch.Tensor, "layer pos head"]:
    """Every (layer, position, head) patch through the fused forward.

    Patching head ``h``'s ``z`` at position ``p`` of layer ``l`` changes nothing before ``p``
    (causal attention) and nothing in layer ``l`` but that head's output. So the ``H`` copies of
    one (layer, position) start from the base run's residual entering layer ``l``, recompute only
    positions ``≥ p`` (earlier keys and values come from the base run), and take the logits before
    ``p`` from the base run. Same numbers as the batched engine (checked in tests), far fewer FLOPs.
    """
    from ..fast_forward import fused_suffix_logits, resid_after_z

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
