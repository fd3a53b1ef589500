"""A hand-planted induction circuit: weights set by hand, so the right answer is known.

A two-layer attention-only model without LayerNorm whose residual stream is split into four
one-hot subspaces: ``[token | position | previous token | output]``.

- ``L0H{prev_head}`` is a previous-token head: its query reads position ``i``, its key reads
  position ``j`` shifted by one, so it attends to ``i - 1``; its OV circuit copies that token into
  the *previous token* subspace.
- ``L1H{induction_head}`` is an induction head: its query reads the current token, its key reads the
  previous-token subspace (K-composition with the head above), so it attends to the token after
  every earlier occurrence of the current token; its OV circuit copies the attended token into the
  *output* subspace, which the unembedding reads as logits.
- Every other head has small random weights (seeded) and does nothing in particular.

The last token id is reserved as BOS so that position 0 never looks like a real previous token.

``planted_positional_model`` builds the shortcut that a fixed segment length rewards: a layer-0
head that attends *by position* to ``i − (R − 1)`` for one fixed ``R`` and copies that token. On
sequences with period ``R`` it predicts the repeats as well as an induction head does, yet it reads
no token to decide where to look, and no previous-token head exists.
"""

from dataclasses import dataclass

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from .models import build_model


@dataclass(frozen=True)
class PlantedCircuit:
    """A hand-built two-layer model with a known previous-token head and induction head."""

    model: HookedTransformer
    previous_token_head: tuple[int, int]
    induction_head: tuple[int, int]
    bos_token_id: int

    def task_dict(self, seq_len: int = 10, repeats: int = 2) -> dict:
        """The repeated-tokens task settings (a JSON-ready dict) that exercise the planted circuit."""
        return {"name": "repeated", "d_vocab": self.model.cfg.d_vocab, "seq_len": seq_len,
                "repeats": repeats, "bos_token_id": self.bos_token_id}


def planted_config(d_vocab: int = 24, n_ctx: int = 48, n_heads: int = 4) -> HookedTransformerConfig:
    """The config of the planted two-layer attention-only model (no LayerNorm)."""
    d_head = max(d_vocab, n_ctx)
    return HookedTransformerConfig(
        n_layers=2, d_model=3 * d_vocab + n_ctx, n_heads=n_heads, d_head=d_head, n_ctx=n_ctx,
        d_vocab=d_vocab, attn_only=True, normalization_type=None, act_fn=None,
        positional_embedding_type="standard", model_name="planted-induction",
    )


def _one_hot_base(model: HookedTransformer, *, strength: float, noise: float, seed: int) -> None:
    """Every planted model's base, in place: small seeded noise in every weight, zero biases,
    one-hot token and position embeddings in their subspaces, and an unembedding that reads the
    output subspace with logit ``strength``."""
    cfg = model.cfg
    V, N = cfg.d_vocab, cfg.n_ctx
    tok, pos, out = 0, V, 2 * V + N  # subspace offsets: [token | position | previous | output]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(noise * torch.randn(p.shape, generator=gen))
        for name, p in model.named_parameters():
            if ".b_" in name or name.endswith("b_U"):
                p.zero_()
        model.embed.W_E.zero_()
        model.embed.W_E[torch.arange(V), tok + torch.arange(V)] = 1.0
        model.pos_embed.W_pos.zero_()
        model.pos_embed.W_pos[torch.arange(N), pos + torch.arange(N)] = 1.0
        model.unembed.W_U.zero_()
        model.unembed.W_U[out + torch.arange(V), torch.arange(V)] = strength


def planted_induction_model(d_vocab: int = 24, n_ctx: int = 48, *, n_heads: int = 4,
                            previous_token_head: int = 1, induction_head: int = 2,
                            strength: float = 12.0, noise: float = 0.02,
                            seed: int = 0, device: str | None = None) -> PlantedCircuit:
    """Build the planted model. ``strength`` is the attention logit of a matching key."""
    cfg = planted_config(d_vocab, n_ctx, n_heads)
    model = build_model(cfg, seed=seed, device="cpu")
    V, N, D = d_vocab, n_ctx, cfg.d_head
    tok, pos, prev, out = 0, V, V + N, 2 * V + N  # subspace offsets
    qk = strength * cfg.attn_scale  # undo the 1/sqrt(d_head) scaling TransformerLens applies
    _one_hot_base(model, strength=strength, noise=noise, seed=seed)
    with torch.no_grad():
        a0 = model.blocks[0].attn
        h = previous_token_head
        for W in (a0.W_Q, a0.W_K, a0.W_V, a0.W_O):
            W[h].zero_()
        # query at position i -> head dim i; key at position j -> head dim j + 1
        a0.W_Q[h, pos + torch.arange(N), torch.arange(N) % D] = qk ** 0.5
        a0.W_K[h, pos + torch.arange(N - 1), torch.arange(1, N) % D] = qk ** 0.5
        a0.W_V[h, tok + torch.arange(V), torch.arange(V)] = 1.0
        a0.W_O[h, torch.arange(V), prev + torch.arange(V)] = 1.0

        a1 = model.blocks[1].attn
        h = induction_head
        for W in (a1.W_Q, a1.W_K, a1.W_V, a1.W_O):
            W[h].zero_()
        a1.W_Q[h, tok + torch.arange(V), torch.arange(V)] = qk ** 0.5
        a1.W_K[h, prev + torch.arange(V), torch.arange(V)] = qk ** 0.5
        a1.W_V[h, tok + torch.arange(V), torch.arange(V)] = 1.0
        a1.W_O[h, torch.arange(V), out + torch.arange(V)] = 1.0
    if device:
        model = model.to(device, print_details=False)
    return PlantedCircuit(model, (0, previous_token_head), (1, induction_head), bos_token_id=V - 1)


@dataclass(frozen=True)
class PlantedPositional:
    """A hand-built model whose head attends ``period − 1`` tokens back by position alone."""

    model: HookedTransformer
    positional_head: tuple[int, int]
    period: int  # R: the head attends from query i to key i - (R - 1)
    bos_token_id: int


def planted_positional_model(period: int, d_vocab: int = 24, n_ctx: int = 128, *,
                             n_heads: int = 4, positional_head: int = 0, strength: float = 12.0,
                             noise: float = 0.02, seed: int = 0,
                             device: str | None = None) -> PlantedPositional:
    """A model whose only circuit is a layer-0 head attending to ``i − (period − 1)`` by position."""
    if not 2 <= period <= n_ctx:
        raise ValueError(f"period must be in [2, n_ctx={n_ctx}], got {period}")
    cfg = planted_config(d_vocab, n_ctx, n_heads)
    model = build_model(cfg, seed=seed, device="cpu")
    V, N, D = d_vocab, n_ctx, cfg.d_head
    tok, pos, out = 0, V, 2 * V + N  # the previous-token subspace stays empty
    qk = strength * cfg.attn_scale
    _one_hot_base(model, strength=strength, noise=noise, seed=seed)
    with torch.no_grad():
        a0 = model.blocks[0].attn
        h = positional_head
        for W in (a0.W_Q, a0.W_K, a0.W_V, a0.W_O):
            W[h].zero_()
        shift = period - 1
        # query at position i -> head dim i; key at position j -> head dim j + shift
        a0.W_Q[h, pos + torch.arange(N), torch.arange(N) % D] = qk ** 0.5
        a0.W_K[h, pos + torch.arange(N - shift), torch.arange(shift, N) % D] = qk ** 0.5
        a0.W_V[h, tok + torch.arange(V), torch.arange(V)] = 1.0
        a0.W_O[h, torch.arange(V), out + torch.arange(V)] = 1.0
    if device:
        model = model.to(device, print_details=False)
    return PlantedPositional(model, (0, positional_head), period, bos_token_id=V - 1)
