"""QK and OV circuits read in the token and position bases, and the numbers that summarise them.

Orientation, everywhere in this package: **rows are queries (or the attended/source token for an
OV circuit), columns are keys (or the output logit)**. So a head that attends to the previous
position has its mass on entry ``(i, i - 1)``, the *sub*-diagonal, and causal attention only ever
uses the lower triangle ``key ≤ query``. This is also how Musat et al.'s Figure 2 reads: its caption
calls the previous-token pattern of ``Pᵀ W_Kᵀ W_Q P`` a sub-diagonal, so their image, too, has one
row per query position; whatever the notation of the product, no block here is transposed.

QK entries are attention logits through the direct path: the bilinear form divided by
TransformerLens' ``attn_scale`` (``√d_head``). In a model without LayerNorm a cell is exactly what
the softmax sees. With LayerNorm the weights are folded, but each token's input-dependent
``1/‖x‖`` scale cannot be: the softmax sees every cell multiplied by the query's scale (one factor
per row, which the per-row scores below ignore) and the key's (one per column, which they do not).
Biases are left out: a query bias adds a key-dependent constant and a key bias a query-dependent
one (which the softmax ignores); neither is part of the token–position structure the block view
is about.

The scores (``subdiagonal_score``, ``diagonal_score``) z-score each query row on its own, because
the softmax normalises each row on its own: adding any constant to a row (``c·i`` to row ``i``, say)
changes no attention weight, so it must not change the score either.
"""

import copy
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from transformer_lens import HookedRootModule, HookedTransformer

# A row whose spread is below this fraction of its largest entry counts as constant (z = 0):
# float64 arithmetic on float32 weights leaves ~1e-16 relative noise on a truly constant row.
_CONSTANT_RTOL = 1e-9
# A z-score over two keys is ±1 whatever the logits, so rows need at least three keys to count.
MIN_KEYS = 3

ROTARY_NOTE = "no positional embedding matrix (rotary): P blocks skipped"


@dataclass
class Basis:
    """The vectors token and position blocks are read in, for a model without ``W_E``/``W_pos``/``W_U``.

    A model whose inputs are vectors (Reddy's network) has no embedding matrix to take rows of, so
    its task supplies them: ``E`` the content vectors (one row each, named in ``names``), ``P`` the
    position vectors, ``U`` the read-out directions of the OV view (columns; ``E``'s transpose when
    the model has no unembedding). ``notes`` say what was chosen.
    """

    E: Float[torch.Tensor, "n_tokens d_model"]
    P: Float[torch.Tensor, "n_pos d_model"] | None
    U: Float[torch.Tensor, "d_model n_out"]
    names: list[str]
    notes: list[str] = field(default_factory=list)


def folded_copy(model: HookedRootModule) -> tuple[HookedRootModule, list[str]]:
    """A deep copy of ``model`` with LayerNorm folded into the neighbouring weights.

    The caller's model is never touched. LayerNorm's weight and bias fold into ``W_Q/W_K/W_V`` (and
    ``W_U``), and the writing weights are centred, as TransformerLens' ``process_weights_`` does for
    pretrained models; the input-dependent ``1/‖x‖`` scale cannot be folded and is left out.
    """
    norm = model.cfg.normalization_type
    if norm not in ("LN", "RMS") or not isinstance(model, HookedTransformer):
        return model, []  # nothing to fold: reading weights never writes them, so no copy needed
    folded = copy.deepcopy(model)
    # W_U stays uncentred so the OV eigen score equals the one `induct score` reports
    folded.process_weights_(fold_ln=True, center_writing_weights=norm == "LN", center_unembed=False)
    return folded, [f"{norm} folded into a copy of the weights before reading them "
                    "(the input-dependent 1/‖x‖ scale is not part of the weights)"]


def has_positions(model: HookedRootModule) -> bool:
    """Whether the model adds a learned/fixed positional embedding matrix ``W_pos`` to the stream."""
    return model.cfg.positional_embedding_type in ("standard", "shortformer") and hasattr(model, "pos_embed")


def token_sample(d_vocab: int, max_tokens: int, seed: int = 0) -> Int[torch.Tensor, " n_tokens"]:
    """All token ids when there are at most ``max_tokens``, else a seeded sorted random sample.

    Token blocks are ``n_tokens²``: for GPT-2's 50,257 tokens the full block would need ~20 GB.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be ≥ 1, got {max_tokens}")
    if d_vocab <= max_tokens:
        return torch.arange(d_vocab)
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(d_vocab, generator=gen)[:max_tokens].sort().values


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)


def head_weights(model: HookedRootModule, layer: int, head: int) -> dict[str, torch.Tensor]:
    """``W_Q, W_K, W_V`` ``[d_model, d_head]`` and ``W_O`` ``[d_head, d_model]`` of one head, float64 CPU.

    Grouped-query attention's shared key/value heads come back repeated per query head
    (TransformerLens' ``attn.W_K`` property already does this).
    """
    attn = model.blocks[layer].attn
    return {name: _f64(getattr(attn, name)[head]) for name in ("W_Q", "W_K", "W_V", "W_O")}


def attn_scale(model: HookedRootModule, layer: int) -> float:
    """The divisor of a layer's attention scores (``attn_scale``, default √d_head)."""
    scale = getattr(model.blocks[layer].attn, "attn_scale", None)
    return float(scale) if scale is not None else model.cfg.d_head ** 0.5


def embeddings(model: HookedRootModule, token_ids: torch.Tensor, n_positions: int | None
               ) -> tuple[Float[torch.Tensor, "n_tokens d_model"], Float[torch.Tensor, "n_pos d_model"] | None]:
    """The sampled rows of ``W_E`` and the first ``n_positions`` rows of ``W_pos`` (None if rotary)."""
    # index before converting: a float64 copy of GPT-2's whole W_E would be 300 MB
    E = _f64(model.W_E[token_ids.to(model.W_E.device)])
    P = _f64(model.W_pos[:n_positions]) if has_positions(model) and n_positions else None
    return E, P


def basis_ov_eigen(model: HookedRootModule, basis: Basis) -> Float[torch.Tensor, "layer head"]:
    """``Σλ / Σ|λ|`` of each head's OV circuit ``E W_V W_O U`` in ``basis`` (as ``ov_eigen_scores``)."""
    cfg = model.cfg
    UE = _f64(basis.U) @ _f64(basis.E)  # [d_model, d_model]
    out = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            w = head_weights(model, layer, head)
            eig = torch.linalg.eigvals(w["W_O"] @ UE @ w["W_V"])
            total = eig.abs().sum()
            out[layer, head] = float("nan") if total == 0 else float(eig.sum().real / total)
    return out


def qk_blocks(model: HookedRootModule, layer: int, head: int, E: Float[torch.Tensor, "n_tokens d_model"],
              P: Float[torch.Tensor, "n_pos d_model"] | None) -> dict[str, torch.Tensor]:
    """The QK circuit of a head as the blocks of ``[E; P] W_Q W_Kᵀ [E; P]ᵀ / attn_scale``.

    Keys ``tt`` (query token × key token), ``tp`` (query token × key position), ``pt`` (query position ×
    key token), ``pp`` (query position × key position: the block Musat et al. write
    ``Pᵀ W_Kᵀ W_Q P``, laid out as in their Figure 2, a previous-token head on the sub-diagonal).
    Only ``tt`` when the model has no positional embedding matrix. Cells are direct-path attention
    logits, up to LayerNorm's ``1/‖x‖`` scales (see the module docstring).
    """
    w = head_weights(model, layer, head)
    s = attn_scale(model, layer)
    q_tok, k_tok = E @ w["W_Q"], E @ w["W_K"]
    blocks = {"tt": q_tok @ k_tok.T / s}
    if P is not None:
        q_pos, k_pos = P @ w["W_Q"], P @ w["W_K"]
        blocks.update(tp=q_tok @ k_pos.T / s, pt=q_pos @ k_tok.T / s, pp=q_pos @ k_pos.T / s)
    return blocks


def ov_block(model: HookedRootModule, layer: int, head: int, token_ids: torch.Tensor,
             E: Float[torch.Tensor, "n_tokens d_model"], basis: Basis | None = None
             ) -> Float[torch.Tensor, "n_tokens n_out"]:
    """``E W_V W_O W_U`` on the sampled tokens: row = attended token, column = output logit.

    A copying head has a positive diagonal. The same token ids index ``W_U``'s columns when they
    exist there (``d_vocab_out`` may be smaller); others are dropped from the columns.
    """
    w = head_weights(model, layer, head)
    if basis is not None:  # read out along the task's own directions (the model has no W_U)
        return (E @ w["W_V"]) @ (w["W_O"] @ _f64(basis.U))
    cols = token_ids[token_ids < model.W_U.shape[1]]
    W_U = _f64(model.W_U[:, cols.to(model.W_U.device)])
    return (E @ w["W_V"]) @ (w["W_O"] @ W_U)


def virtual_k_block(model: HookedRootModule, src: tuple[int, int], dst: tuple[int, int],
                    E: Float[torch.Tensor, "n_tokens d_model"]) -> Float[torch.Tensor, "n_tokens n_tokens"]:
    """The K-composition token–token block of ``dst`` reading ``src``'s output in its keys.

    Row ``t``: the query's own token (``E W_Q²``); column ``s``: the token ``src`` moved into the
    key position (``E W_V¹ W_O¹ W_K²``). So the entry is
    ``E W_Q² W_K²ᵀ W_O¹ᵀ W_V¹ᵀ Eᵀ / attn_scale`` (``E·W_O¹ᵀW_V¹ᵀ·W_K²ᵀW_Q²·E`` in
    the transposed-weight notation, written with TransformerLens' ``[d_model, d_head]`` weights,
    queries in rows as in every block here; ``docs/weights.md``). When ``src`` is a
    previous-token head, column ``s`` is the key whose *previous* token is ``s``; an induction
    head matches ``t == s``: a diagonal.
    """
    if src[0] >= dst[0]:
        raise ValueError(f"K-composition needs an earlier source layer, got {src} → {dst}")
    w1 = head_weights(model, *src)
    w2 = head_weights(model, *dst)
    q = E @ w2["W_Q"]
    k = ((E @ w1["W_V"]) @ w1["W_O"]) @ w2["W_K"]
    return q @ k.T / attn_scale(model, dst[0])


def _row_z(rows: Float[torch.Tensor, "n_rows n_keys"], valid: torch.Tensor | None = None
           ) -> Float[torch.Tensor, "n_rows n_keys"]:
    """Each row z-scored over its ``valid`` entries (population std); constant rows give 0."""
    rows = rows.to(torch.float64)
    w = torch.ones_like(rows) if valid is None else valid.to(torch.float64)
    count = w.sum(-1, keepdim=True)
    mean = (rows * w).sum(-1, keepdim=True) / count
    # two passes (mean, then squared deviations) so a constant row gives exactly 0, not rounding noise
    dev = (rows - mean) * w
    std = (dev ** 2).sum(-1, keepdim=True).div(count).sqrt()
    scale = (rows * w).abs().amax(-1, keepdim=True)
    constant = (std <= _CONSTANT_RTOL * scale) | ~torch.isfinite(std)
    return torch.where(constant, torch.zeros_like(dev), dev / torch.where(constant, 1.0, std))


def subdiagonal_score(block: Float[torch.Tensor, "query key"]) -> float | None:
    """How far key = query − 1 stands out in each query row, in that row's standard deviations.

    Rows are queries, columns keys. Each query row ``i`` with at least three causal keys
    (``j ≤ i``, so ``i ≥ 2``) is z-scored over those keys alone; the score is the mean over such
    rows of the z-value at key ``i − 1``. Invariant to adding any constant to a row (the softmax
    ignores it) and to multiplying a row by a positive factor (as LayerNorm's query-side
    ``1/‖x‖`` does). A constant row
    contributes 0; a one-hot sub-diagonal row ``i`` contributes ``√i``. None when the block has
    fewer than three positions (no row has three keys).
    """
    n = min(block.shape)
    if n < MIN_KEYS:
        return None
    b = block[:n, :n].to(torch.float64)
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    z = _row_z(b, causal)
    rows = torch.arange(MIN_KEYS - 1, n)
    return float(z[rows, rows - 1].mean())


def diagonal_score(block: Float[torch.Tensor, "row col"]) -> float | None:
    """How far column = row stands out in each row, in that row's standard deviations.

    Each row ``i < min(block.shape)`` is z-scored over all its columns (no causal mask: for a
    virtual K-composition block the columns are candidate key tokens, for an OV block the output
    logits); the score is the mean z-value at ``(i, i)``. High for token matching (virtual K block)
    or copying (OV block); invariant to any per-row constant. None when a row has fewer than three
    columns.
    """
    n = min(block.shape)
    if block.shape[1] < MIN_KEYS or n < 1:
        return None
    z = _row_z(block[:n].to(torch.float64))
    idx = torch.arange(n)
    return float(z[idx, idx].mean())
