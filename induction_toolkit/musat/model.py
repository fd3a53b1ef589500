"""The disentangled two-layer attention-only transformer (Musat et al. 2025), exact and exported.

Stream per position (``d₀ = D + L``): ``h⁰ = [x; p]`` (item content ``x ∈ ℝ^D``, one-hot position
``p ∈ ℝ^L``). Layer ``l`` has one merged query–key matrix ``W_l`` and value = identity:
``score_ij = h_iᵀ W_l h_j`` (query ``i``, key ``j``), ``a_i = Σ_j softmax_j(score_ij) h_j``, and
the layer *concatenates*: ``h¹ = [h⁰; a¹]`` (``2d₀``), ``h² = [h¹; a²]`` (``4d₀``). The read-out
``W₃ ∈ ℝ^{D×4d₀}`` maps ``h²`` at the query (last) position into item space; the logits are the
inner products with the candidate labels (every ``±e_a`` token for orthonormal items, the ``N``
context labels for Gaussian ones). No MLP, no LayerNorm, no ``1/√d`` scale. All weights start at 0.

Attention is causal and a position never attends to itself (key ``j < i``); position 0, which
has no earlier key, attends to itself (its row must sum to 1 somewhere; it is an item, never a
key layer 2 needs). ``to_hooked`` writes the same function as a TransformerLens
``HookedTransformer`` (``d_model = 4d₀``, the concatenation as disjoint residual subspaces), so
``induct score``/``ablate``/``patch``/``weights`` run on it; there the self-mask is a fixed
``−SELF_MASK`` on the position–position diagonal of each layer's QK matrix.
"""

import warnings
from dataclasses import dataclass

import torch
from jaxtyping import Float
from transformer_lens import HookedTransformer, HookedTransformerConfig

from .task import Batch, token_embedding

SELF_MASK = 1e4  # exp(−1e4) underflows to exactly 0 in float32 and float64


@dataclass(frozen=True)
class MusatConfig:
    """``N`` pairs, item dimension ``D`` and the item family; ``L``, ``d₀`` follow."""

    n_pairs: int
    d_item: int
    items: str = "orthonormal"

    @property
    def n_ctx(self) -> int:
        """Sequence length ``L = 2N + 1``."""
        return 2 * self.n_pairs + 1

    @property
    def d0(self) -> int:
        """Width of ``h⁰ = [x; p]``: ``D + L``."""
        return self.d_item + self.n_ctx


@dataclass
class MusatWeights:
    """``W1`` [d₀, d₀], ``W2`` [2d₀, 2d₀], ``W3`` [D, 4d₀] (query rows, key columns)."""

    W1: Float[torch.Tensor, "d0 d0"]
    W2: Float[torch.Tensor, "d1 d1"]
    W3: Float[torch.Tensor, "d_item d2"]

    def tensors(self) -> list[torch.Tensor]:
        """The three matrices, in order."""
        return [self.W1, self.W2, self.W3]

    def flat(self) -> Float[torch.Tensor, " n_params"]:
        """All weights as one vector (for PCA of a trajectory)."""
        return torch.cat([w.detach().reshape(-1) for w in self.tensors()])

    def clone(self) -> "MusatWeights":
        """A detached copy."""
        return MusatWeights(*(w.detach().clone() for w in self.tensors()))


def zero_weights(cfg: MusatConfig, dtype: torch.dtype = torch.float64) -> MusatWeights:
    """The zero initialisation the theorem assumes."""
    d0 = cfg.d0
    return MusatWeights(torch.zeros(d0, d0, dtype=dtype), torch.zeros(2 * d0, 2 * d0, dtype=dtype),
                        torch.zeros(cfg.d_item, 4 * d0, dtype=dtype))


def _mask(n: int, device: torch.device) -> torch.Tensor:
    """Allowed (query, key) pairs: ``j < i``, plus ``(0, 0)``."""
    allowed = torch.ones(n, n, dtype=torch.bool, device=device).tril(-1)
    allowed[0, 0] = True
    return allowed


def layer1(W1: torch.Tensor, x: Float[torch.Tensor, "batch pos d"]) -> Float[torch.Tensor, "batch pos pos"]:
    """Layer 1's attention pattern (every query row)."""
    n, d = x.shape[1], x.shape[2]
    # h⁰ = [x; p] with one-hot p: (h⁰W)(h⁰)ᵀ = (h⁰W)[:, :, :D] xᵀ + (h⁰W)[:, :, D:], no identity blocks built
    q = x @ W1[:d] + W1[d:]
    scores = q[..., :d] @ x.transpose(1, 2) + q[..., d:]
    return scores.masked_fill(~_mask(n, x.device), float("-inf")).softmax(-1)


def query_stream(w: MusatWeights, x: Float[torch.Tensor, "batch pos d"]
                 ) -> tuple[Float[torch.Tensor, "batch d2"], Float[torch.Tensor, "batch pos pos"],
                            Float[torch.Tensor, "batch pos"]]:
    """``h²`` at the query (last) position, layer 1's pattern, and layer 2's query row.

    Every block of ``h¹ = [x; p; A¹x; A¹]`` is used as is (``p`` is the identity), so no
    ``L × L`` identity is multiplied.
    """
    d, n = x.shape[2], x.shape[1]
    d0 = d + n
    A1 = layer1(w.W1, x)
    a1x = A1 @ x
    hq = torch.cat([x[:, -1], torch.zeros_like(x[:, -1, :1]).expand(-1, n).clone(), a1x[:, -1], A1[:, -1]], -1)
    hq[:, d + n - 1] = 1.0  # the query's one-hot position
    q = hq @ w.W2
    s2 = ((x @ q[:, :d, None]) + (a1x @ q[:, d0:d0 + d, None]) + (A1 @ q[:, d0 + d:, None]))[..., 0] + q[:, d:d0]
    s2 = torch.cat([s2[:, :-1], torch.full_like(s2[:, -1:], float("-inf"))], -1)  # never attends to itself
    A2 = s2.softmax(-1)
    A2r = A2[:, None]
    a2 = torch.cat([(A2r @ x)[:, 0], A2, (A2r @ a1x)[:, 0], (A2r @ A1)[:, 0]], -1)
    return torch.cat([hq, a2], -1), A1, A2


def forward_logits(w: MusatWeights, batch: Batch) -> Float[torch.Tensor, "batch n_cand"]:
    """The query's logits over the candidate labels (all ``2D`` tokens, or the ``N`` context labels)."""
    h2, _, _ = query_stream(w, batch.x)
    out = h2 @ w.W3.T
    if batch.tokens is None:
        labels = batch.x[:, 1:-1:2]
        return (labels @ out[:, :, None])[..., 0]
    return out @ token_embedding(out.shape[-1], out.dtype).T


def targets(batch: Batch) -> torch.Tensor:
    """The class index ``forward_logits`` must put first: the label token, or the pair index."""
    return batch.pair if batch.tokens is None else batch.target


def to_hooked(w: MusatWeights, cfg: MusatConfig, device: str = "cpu") -> HookedTransformer:
    """The same function as a ``HookedTransformer`` (orthonormal items only; see the module docstring)."""
    if cfg.items != "orthonormal":
        raise ValueError("only orthonormal (token) items can be exported as a HookedTransformer")
    d, n, d0 = cfg.d_item, cfg.n_ctx, cfg.d0
    tl_cfg = HookedTransformerConfig(
        n_layers=2, d_model=4 * d0, n_heads=1, d_head=2 * d0, n_ctx=n, d_vocab=2 * d,
        attn_only=True, normalization_type=None, positional_embedding_type="standard",
        act_fn=None, use_attn_scale=False, model_name=f"musat-disentangled-N{cfg.n_pairs}-D{d}",
        device=device, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        model = HookedTransformer(tl_cfg, move_to_device=False)
    params = dict(model.named_parameters())
    # zero every weight and bias; buffers (the causal mask, IGNORE) keep their values
    sd = {k: torch.zeros_like(v) if k in params else v for k, v in model.state_dict().items()}
    f = torch.float32
    sd["embed.W_E"][:, :d] = token_embedding(d, f)
    sd["pos_embed.W_pos"][:, d:d0] = torch.eye(n, dtype=f)
    pos_diag = torch.zeros(2 * d0, 2 * d0, dtype=f)
    pos_diag[range(d, d0), range(d, d0)] = SELF_MASK
    # layer 1 reads h⁰ = residual[0:d₀] and writes a¹ to residual[d₀:2d₀]
    sd["blocks.0.attn.W_Q"][0, :d0, :d0] = w.W1.detach().to(f) - pos_diag[:d0, :d0]
    sd["blocks.0.attn.W_K"][0, :d0, :d0] = torch.eye(d0, dtype=f)
    sd["blocks.0.attn.W_V"][0, :d0, :d0] = torch.eye(d0, dtype=f)
    sd["blocks.0.attn.W_O"][0, :d0, d0:2 * d0] = torch.eye(d0, dtype=f)
    # layer 2 reads h¹ = residual[0:2d₀] and writes a² to residual[2d₀:4d₀]
    sd["blocks.1.attn.W_Q"][0, :2 * d0] = w.W2.detach().to(f) - pos_diag
    sd["blocks.1.attn.W_K"][0, :2 * d0] = torch.eye(2 * d0, dtype=f)
    sd["blocks.1.attn.W_V"][0, :2 * d0] = torch.eye(2 * d0, dtype=f)
    sd["blocks.1.attn.W_O"][0, :, 2 * d0:] = torch.eye(2 * d0, dtype=f)
    sd["unembed.W_U"] = w.W3.detach().to(f).T @ token_embedding(d, f).T
    model.load_state_dict(sd)
    return model.to(device, print_details=False)


def from_hooked(model: HookedTransformer, cfg: MusatConfig) -> MusatWeights:
    """Read ``W1, W2, W3`` back from an exported model (inverse of ``to_hooked``)."""
    d, d0 = cfg.d_item, cfg.d0
    W1 = model.blocks[0].attn.W_Q[0, :d0, :d0].detach().double().clone()
    W2 = model.blocks[1].attn.W_Q[0, :2 * d0].detach().double().clone()
    W1[range(d, d0), range(d, d0)] += SELF_MASK
    W2[range(d, d0), range(d, d0)] += SELF_MASK
    # W_U = W3ᵀ Eᵀ and E's rows 2a are +e_a, so the even columns of W_U are W3's rows
    W3 = model.W_U[:, 0::2].detach().double().T.clone()
    return MusatWeights(W1, W2, W3)
