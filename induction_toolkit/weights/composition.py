"""Q-, K- and V-composition scores (Elhage et al. 2021) and their random-matrix baseline.

``score(A → B) = ‖W_OV^A W^B‖_F / (‖W_OV^A‖_F ‖W^B‖_F)`` with ``W_OV = W_V W_O`` of the earlier head
``A`` and ``W^B`` the later head's ``W_Q W_Kᵀ`` (Q), ``W_K W_Qᵀ`` (K) or ``W_V W_O`` (V), in
TransformerLens' row-vector convention. The layout matches ``HookedTransformer.all_composition_scores``:
``[layer_from, head_from, layer_to, head_to]``, zero unless ``layer_from < layer_to``.

Nothing ``d_model × d_model`` is formed: every matrix is a product of ``d_model × d_head`` factors,
so ``‖A M B‖²_F = Σ (AᵀA·M) ⊙ (M·BBᵀ)`` with ``M`` the ``d_head × d_head`` middle product.

The raw scores are dominated by dimension (random heads in a 64-dim stream score ≈ 0.12), so they
are reported minus a baseline: the mean score of ``BASELINE_SAMPLES`` pairs of seeded standard
Gaussian factor matrices of the same shapes.
"""

from collections.abc import Callable
from typing import Literal

import torch
from jaxtyping import Float
from transformer_lens import HookedRootModule

CompositionMode = Literal["Q", "K", "V"]
MODES: tuple[CompositionMode, ...] = ("Q", "K", "V")
BASELINE_SAMPLES = 200


def _factors(model: HookedRootModule, layer: int) -> dict[str, torch.Tensor]:
    attn = model.blocks[layer].attn
    return {name: getattr(attn, name).detach().to("cpu", torch.float64)
            for name in ("W_Q", "W_K", "W_V", "W_O")}


def _right_factors(w: dict[str, torch.Tensor], mode: CompositionMode) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) factors ``[..., d_model, d_head]`` and ``[..., d_head, d_model]`` of the reading matrix."""
    if mode == "Q":
        return w["W_Q"], w["W_K"].transpose(-1, -2)
    if mode == "K":
        return w["W_K"], w["W_Q"].transpose(-1, -2)
    if mode == "V":
        return w["W_V"], w["W_O"]
    raise ValueError(f"mode must be one of Q, K, V; got {mode!r}")


def _gram_norm_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖a b‖²_F`` for ``a [..., m, r]``, ``b [..., r, n]`` through the ``r × r`` Gram matrices."""
    return ((a.transpose(-1, -2) @ a) * (b @ b.transpose(-1, -2))).sum((-2, -1))


def _pair_scores(a1: torch.Tensor, b1: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor,
                 left_norm: torch.Tensor, right_norm: torch.Tensor) -> torch.Tensor:
    """Scores of every left head (leading dim of a1/b1) against every right head (of a2/b2).

    ``a1 [H1, d_model, r1]``, ``b1 [H1, r1, d_model]``, ``a2 [H2, d_model, r2]``, ``b2 [H2, r2, d_model]``,
    ``left_norm [H1]``, ``right_norm [H2]`` (Frobenius norms of ``a1 b1`` and ``a2 b2``) → ``[H1, H2]``.
    """
    g_left = a1.transpose(-1, -2) @ a1  # [H1, r1, r1]
    g_right = b2 @ b2.transpose(-1, -2)  # [H2, r2, r2]
    middle = b1[:, None] @ a2[None]  # [H1, H2, r1, r2]
    num = ((g_left[:, None] @ middle) * (middle @ g_right[None])).sum((-2, -1)).clamp_min(0).sqrt()
    den = left_norm[:, None] * right_norm[None, :]
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def composition_scores(model: HookedRootModule, mode: CompositionMode,
                       progress: Callable[[], None] | None = None
                       ) -> Float[torch.Tensor, "layer head layer head"]:
    """Raw composition scores, equal to TransformerLens' ``model.all_composition_scores(mode)``.

    Pass a LayerNorm-folded model (``circuits.folded_copy``) to read the weights the model uses.
    A head whose OV or QK matrix is zero composes with nothing: its scores are 0.
    ``progress()`` is called once per source layer.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of Q, K, V; got {mode!r}")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    factors = [_factors(model, layer) for layer in range(n_layers)]
    ov_norms = [_gram_norm_sq(f["W_V"], f["W_O"]).sqrt() for f in factors]
    right = [_right_factors(f, mode) for f in factors]
    right_norms = [_gram_norm_sq(a, b).sqrt() for a, b in right]
    out = torch.zeros(n_layers, n_heads, n_layers, n_heads, dtype=torch.float64)
    for l1 in range(n_layers):
        a1, b1 = factors[l1]["W_V"], factors[l1]["W_O"]
        for l2 in range(l1 + 1, n_layers):
            out[l1, :, l2, :] = _pair_scores(a1, b1, *right[l2], ov_norms[l1], right_norms[l2])
        if progress is not None:
            progress()
    return out


def random_baseline(d_model: int, d_head: int, mode: str, *,  # a CompositionMode, checked below
                    samples: int = BASELINE_SAMPLES, seed: int = 0) -> float:
    """Mean composition score of ``samples`` pairs of heads with i.i.d. standard Gaussian weights.

    The score is scale-invariant, so the Gaussian's variance does not matter; only the shapes do.
    With i.i.d. weights the Q, K and V baselines share one distribution (all four factors have the
    same shapes), so with the same seed they are the same number; ``analyze_weights`` computes one.
    """
    if samples < 1:
        raise ValueError(f"samples must be ≥ 1, got {samples}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of Q, K, V; got {mode!r}")
    gen = torch.Generator().manual_seed(seed)

    def draw(*shape: int) -> torch.Tensor:
        # float32 draws are several times faster; the score itself is then taken in float64
        return torch.randn(samples, *shape, generator=gen).double()

    a1, b1 = draw(d_model, d_head), draw(d_head, d_model)
    a2, b2 = draw(d_model, d_head), draw(d_head, d_model)
    # one left head per sample against its own right head: the diagonal of the pair grid
    g_left = a1.transpose(-1, -2) @ a1
    g_right = b2 @ b2.transpose(-1, -2)
    middle = b1 @ a2
    num = ((g_left @ middle) * (middle @ g_right)).sum((-2, -1)).sqrt()
    den = _gram_norm_sq(a1, b1).sqrt() * _gram_norm_sq(a2, b2).sqrt()
    return float((num / den).mean())
