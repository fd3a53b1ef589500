"""G models of one architecture as one batched model: every weight ``[G, ...]``, every matmul batched.

A tiny model's training step is ~50 small kernels, each far below what the hardware can do
(docs/performance.md). Training G runs that share a shape — seeds, learning rates, weight decays,
dropout rates — as one model with a leading group dimension turns G × 50 tiny kernels into 50
bigger ones (``torch.baddbmm`` over G, ``scaled_dot_product_attention`` over ``G × batch``).

:class:`GroupedModel` holds the G members' parameters in one flat ``[G, N]`` buffer (member ``g``
is row ``g``, laid out as its ``named_parameters()``), with gradients in a second buffer of the
same layout, so a grouped optimizer updates all of them in a handful of whole-buffer operations
(``training/grouped_adamw.py``). Each parameter is exposed as a ``[G, *shape]`` leaf view into the
buffer; autograd accumulates into views of the gradient buffer in place.

The math is :mod:`induction_toolkit.fast_forward`'s (itself checked against TransformerLens'
hooked forward), member by member: embedding + positional embedding, pre-LN, attention with TL's
scale and causal mask, the cfg's MLP activation, final LN, unembed, mean next-token
cross-entropy. Which configurations it covers is ``fast_forward.unsupported_reason``'s answer.

Dropout (the training loop's attention-pattern and block-output dropout, ``training.step.
dropout_hooks``) is applied per member with the member's own generator, drawing masks of the same
shapes in the same order as a single run's hooked forward does: on CPU a member's masks equal
those of a single run with its seed.
"""

import contextlib
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from transformer_lens import HookedTransformer

from .errors import ConfigError
from .fast_forward import ACTIVATIONS, unsupported_reason

__all__ = ["GroupedModel"]


class GroupedModel:
    """``G`` HookedTransformers of one config, stacked: weights ``[G, ...]``, batched matmuls.

    ``models`` give the initial weights (copied in; the models are not kept). ``bf16=True`` runs
    the matmuls and attention under bfloat16 autocast, parameters and loss in fp32.
    """

    def __init__(self, models: Sequence[HookedTransformer], *, bf16: bool = False):
        if not models:
            raise ConfigError("a group needs at least one model")
        first = models[0]
        reason = unsupported_reason(first)
        if reason is not None:
            raise ConfigError(f"grouped training needs a model the fused forward covers: {reason}")
        self.cfg = first.cfg
        self.attn_scale = float(first.blocks[0].attn.attn_scale)  # TL's, whatever use_attn_scale says
        self.bf16 = bf16
        self.n_members = len(models)
        named = list(first.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = {n: tuple(p.shape) for n, p in named}
        for model in models[1:]:
            shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
            if shapes != self.shapes:
                raise ConfigError("grouped models must have the same parameter shapes")
        self.offsets: dict[str, tuple[int, int]] = {}
        n = 0
        for name in self.names:
            size = first.get_parameter(name).numel()
            self.offsets[name] = (n, n + size)
            n += size
        self.n_params = n
        device, dtype = first.W_E.device, first.W_E.dtype
        self.device = device
        self.flat = torch.zeros(self.n_members, n, device=device, dtype=dtype)
        self.grad = torch.zeros_like(self.flat)
        self.params: dict[str, torch.Tensor] = {}
        for name in self.names:
            lo, hi = self.offsets[name]
            leaf = self.flat[:, lo:hi].view(self.n_members, *self.shapes[name]).detach()
            leaf.requires_grad_(True)
            leaf.grad = self.grad[:, lo:hi].view(self.n_members, *self.shapes[name])
            self.params[name] = leaf
        for g, model in enumerate(models):
            self.load_member(g, model)

    # --- members ------------------------------------------------------------------------------

    @torch.no_grad()
    def load_member(self, g: int, model: HookedTransformer) -> None:
        """Copy ``model``'s weights into member ``g``."""
        row = self.flat[g]
        for name, p in model.named_parameters():
            lo, hi = self.offsets[name]
            row[lo:hi].copy_(p.detach().reshape(-1))

    @torch.no_grad()
    def store_member(self, g: int, model: HookedTransformer) -> None:
        """Copy member ``g``'s weights into ``model`` (a HookedTransformer of the same config)."""
        for name, p in model.named_parameters():
            p.copy_(self.member_tensor(self.flat, g, name))

    def member_tensor(self, buffer: Float[torch.Tensor, "member n"], g: int,
                      name: str) -> torch.Tensor:
        """Parameter ``name`` of member ``g`` in a ``[G, N]`` buffer of this layout (a view)."""
        lo, hi = self.offsets[name]
        return buffer[g, lo:hi].view(self.shapes[name])

    def zero_grad(self) -> None:
        """Zero the gradient buffer (every member's gradients)."""
        self.grad.zero_()

    # --- forward ------------------------------------------------------------------------------

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def losses(self, tokens: Int[torch.Tensor, "member batch pos"], *,
               dropout: Sequence[float] | None = None,
               generators: Sequence[torch.Generator | None] | None = None,
               active: Sequence[bool] | None = None) -> Float[torch.Tensor, " member"]:
        """Each member's mean next-token cross-entropy (nats) on its own batch ``tokens[g]``.

        ``dropout[g] > 0`` applies dropout to member ``g`` with masks from ``generators[g]``;
        members not ``active`` draw no masks (their generators stay where they are).
        """
        drop = _Dropout(dropout, generators, active, self.n_members)
        with self._autocast():
            x = self._embed(tokens)
            for layer in range(self.cfg.n_layers):
                x = self._block(layer, x, drop)
            logits = self._unembed(x[:, :, :-1])
        n_members, n_batch, n_pos = tokens.shape
        flat_logits = logits.reshape(-1, logits.shape[-1]).float()
        per_token = F.cross_entropy(flat_logits, tokens[:, :, 1:].reshape(-1), reduction="none")
        return per_token.view(n_members, -1).mean(dim=1)

    @torch.no_grad()
    def logits(self, tokens: Int[torch.Tensor, "member batch pos"]) -> Float[torch.Tensor, "member batch pos d_vocab_out"]:
        """Each member's next-token logits on its own batch (inference, no dropout)."""
        with self._autocast():
            x = self._embed(tokens)
            for layer in range(self.cfg.n_layers):
                x = self._block(layer, x, _Dropout(None, None, None, self.n_members))
            return self._unembed(x).float()

    def backward(self, losses: Float[torch.Tensor, " member"],
                 active: Bool[torch.Tensor, " member"] | None = None) -> None:
        """Gradients of every (active) member's loss into the gradient buffer (zeroed first).

        Summing the losses gives each member the gradient of its own loss: no weight is shared.
        """
        self.zero_grad()
        total = losses.sum() if active is None else torch.where(active, losses, 0.0).sum()
        with warnings.catch_warnings():
            # the gradient views are strided rows of the flat buffer; accumulation is in place
            warnings.filterwarnings("ignore", message="grad and param do not obey")
            total.backward()

    def _p(self, name: str) -> torch.Tensor:
        return self.params[name]

    def _embed(self, tokens: Int[torch.Tensor, "member batch pos"]) -> Float[torch.Tensor, "member batch pos d_model"]:
        n_members, _, n_pos = tokens.shape
        w_e = self._p("embed.W_E")
        d_vocab = w_e.shape[1]
        # one embedding lookup over the stacked tables: member g's ids shifted by g × d_vocab
        shift = (torch.arange(n_members, device=tokens.device) * d_vocab).view(-1, 1, 1)
        x = F.embedding(tokens + shift, w_e.reshape(-1, w_e.shape[-1]))
        return x + self._p("pos_embed.W_pos")[:, None, :n_pos]

    def _norm(self, x: torch.Tensor, prefix: str | None) -> torch.Tensor:
        if prefix is None or self.cfg.normalization_type is None:
            return x
        h = F.layer_norm(x, (x.shape[-1],), None, None, self.cfg.eps)
        if self.cfg.normalization_type == "LNPre":
            return h
        w, b = self._p(f"{prefix}.w"), self._p(f"{prefix}.b")
        shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[-1],)
        return torch.addcmul(b.view(shape), h, w.view(shape))

    def _block(self, layer: int, x: Float[torch.Tensor, "member batch pos d_model"],
               drop: "_Dropout") -> Float[torch.Tensor, "member batch pos d_model"]:
        cfg = self.cfg
        n_members, n_batch, n_pos, d_model = x.shape
        n_heads, d_head = cfg.n_heads, cfg.d_head
        pre = f"blocks.{layer}"
        h = self._norm(x, f"{pre}.ln1").reshape(n_members, -1, d_model)
        w_qkv = torch.cat([self._p(f"{pre}.attn.W_Q"), self._p(f"{pre}.attn.W_K"),
                           self._p(f"{pre}.attn.W_V")], dim=1)  # [G, 3h, d_model, d_head]
        w_qkv = w_qkv.permute(0, 2, 1, 3).reshape(n_members, d_model, -1)
        b_qkv = torch.cat([self._p(f"{pre}.attn.b_Q"), self._p(f"{pre}.attn.b_K"),
                           self._p(f"{pre}.attn.b_V")], dim=1).reshape(n_members, 1, -1)
        qkv = torch.baddbmm(b_qkv, h, w_qkv)
        q, k, v = (t.transpose(2, 3).reshape(n_members * n_batch, n_heads, n_pos, d_head)
                   for t in qkv.view(n_members, n_batch, n_pos, 3, n_heads, d_head).unbind(3))
        scale = 1.0 / self.attn_scale
        if drop.any:
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale
            causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=x.device).triu(1)
            pattern = scores.masked_fill(causal, float("-inf")).softmax(dim=-1)
            pattern = drop(pattern.view(n_members, n_batch, n_heads, n_pos, n_pos))
            z = torch.matmul(pattern.reshape(-1, n_heads, n_pos, n_pos), v)
        else:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        z = z.view(n_members, n_batch, n_heads, n_pos, d_head).transpose(2, 3)
        z = z.reshape(n_members, n_batch * n_pos, n_heads * d_head)
        w_o = self._p(f"{pre}.attn.W_O").reshape(n_members, n_heads * d_head, d_model)
        attn_out = torch.baddbmm(self._p(f"{pre}.attn.b_O")[:, None], z, w_o)
        x = x + drop(attn_out.view_as(x))
        if not cfg.attn_only:
            h = self._norm(x, f"{pre}.ln2").reshape(n_members, -1, d_model)
            h = ACTIVATIONS[cfg.act_fn](torch.baddbmm(self._p(f"{pre}.mlp.b_in")[:, None], h,
                                                      self._p(f"{pre}.mlp.W_in")))
            mlp_out = torch.baddbmm(self._p(f"{pre}.mlp.b_out")[:, None], h,
                                    self._p(f"{pre}.mlp.W_out"))
            x = x + drop(mlp_out.view_as(x))
        return x

    def _unembed(self, x: Float[torch.Tensor, "member batch pos d_model"]) -> Float[torch.Tensor, "member batch pos d_vocab_out"]:
        n_members, n_batch, n_pos, d_model = x.shape
        h = self._norm(x, "ln_final").reshape(n_members, -1, d_model)
        logits = torch.baddbmm(self._p("unembed.b_U")[:, None], h, self._p("unembed.W_U"))
        return logits.view(n_members, n_batch, n_pos, -1)


class _Dropout:
    """Per-member dropout at the sites (and in the order) of ``training.step.dropout_hooks``.

    A member's mask is drawn as ``F.dropout`` draws it on CPU (``bernoulli_(1 - p)``, scaled by
    ``1 / (1 - p)``), from that member's generator: the same masks as a single run's.
    """

    def __init__(self, rates: Sequence[float] | None, generators, active, n_members: int):
        rates = [0.0] * n_members if rates is None else [float(p) for p in rates]
        active = [True] * n_members if active is None else [bool(a) for a in active]
        self.rates = [p if a else 0.0 for p, a in zip(rates, active)]
        self.generators = generators
        self.any = any(p > 0 for p in self.rates)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.any:
            return x
        masks = []
        for g, p in enumerate(self.rates):
            if p > 0:
                keep = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device)
                keep.bernoulli_(1 - p, generator=self.generators[g])
                masks.append(keep.div_(1 - p))
            else:
                masks.append(torch.ones(x.shape[1:], dtype=x.dtype, device=x.device))
        return x * torch.stack(masks)
