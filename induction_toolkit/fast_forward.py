"""A fused training forward for ``HookedTransformer``: the same math, without the hooks.

TransformerLens' forward is built for analysis: every activation passes through a ``HookPoint``,
projections are per-head einsums, attention scores are materialised, masked and soft-maxed
explicitly. For small models that overhead, not arithmetic, sets the training speed. This module
computes exactly the same function — embedding + positional embedding, pre-LN, attention with
TL's scale and causal mask, the cfg's MLP activation, final LN, unembed, mean next-token
cross-entropy — directly from the model's own ``Parameter``s, so gradients land on the
``HookedTransformer`` and checkpoints are unchanged:

- Q, K and V come from one matmul over the stacked ``W_Q | W_K | W_V`` (the stack is part of the
  autograd graph, so each head's gradient flows back to its own parameter);
- attention is ``F.scaled_dot_product_attention(is_causal=True, scale=1/attn_scale)``: TL masks
  with ``IGNORE = -inf`` before its softmax, which is the same function;
- biases are folded into ``addmm`` calls, as TL's ``batch_addmm`` does.

Configurations with anything else (rotary/shortformer positions, RMSNorm, gated MLPs, GQA,
local attention, soft-capping, parallel attention+MLP, …) are not fused: ``FastForward`` falls back
to the hooked forward and says why in ``.reason``. A model with hooks attached (e.g. training
dropout) also runs through the hooked forward, so hooks are never silently skipped.

``bf16=True`` runs the matmuls and attention under ``torch.autocast(bfloat16)`` with parameters,
LayerNorm statistics and the loss kept in fp32 — opt-in, since it changes the numbers.
"""

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from transformer_lens import HookedTransformer

__all__ = ["FastForward", "ZCallback", "can_fuse", "fast_forward", "fused_logits_through_z", "heads_z", "fast_loss", "fast_loss_bf16", "fast_loss_compiled",
           "fast_loss_compiled_bf16", "fused_logits", "fused_logits_from", "fused_loss", "fused_suffix_logits",
           "has_hooks", "resid_after_z", "unsupported_reason"]


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# TransformerLens activation names whose function has an exact torch equivalent.
# (gelu_new, gelu_fast and gelu_pytorch_tanh are all the tanh approximation of GELU.)
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
}

# Config fields that must hold these values for the fused math to equal TL's.
_REQUIRED: dict[str, Any] = {
    "positional_embedding_type": "standard",
    "attention_dir": "causal",
    "gated_mlp": False,
    "parallel_attn_mlp": False,
    "post_embedding_ln": False,
    "use_normalization_before_and_after": False,
    "use_local_attn": False,
    "use_qk_norm": False,
    "use_attention_sinks": False,
    "use_logn_attn": False,
    "load_in_4bit": False,
    "clip_qkv": None,
    "num_experts": None,
}


def unsupported_reason(model: Any) -> str | None:
    """Why ``model`` cannot take the fused forward, or ``None`` when it can."""
    if not isinstance(model, HookedTransformer):
        return f"{type(model).__name__} is not a HookedTransformer"
    cfg = model.cfg
    for name, value in _REQUIRED.items():
        have = getattr(cfg, name, value)
        if have != value:
            return f"config {name}={have!r} (the fused forward needs {value!r})"
    if cfg.normalization_type not in ("LN", "LNPre", None):
        return f"normalization_type={cfg.normalization_type!r} (fused: LN, LNPre or none)"
    if getattr(cfg, "final_rms", False):
        return "final_rms=True"
    if cfg.n_key_value_heads is not None and cfg.n_key_value_heads != cfg.n_heads:
        return "grouped-query attention"
    if not cfg.attn_only and cfg.act_fn not in ACTIVATIONS:
        return f"act_fn={cfg.act_fn!r} (fused: {', '.join(ACTIVATIONS)})"
    for name in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        cap = getattr(cfg, name, -1.0)
        if cap is not None and cap > 0:
            return f"{name}={cap}"
    if cfg.original_architecture not in (None, "GPT2LMHeadModel", "neel", "neel-solu-old"):
        # Architectures TL converts can carry details (post-norm, rotary variants) that the
        # fields above do not capture; only fuse what was built from a plain config or GPT-2.
        return f"original_architecture={cfg.original_architecture!r}"
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "padding_side", "right") == "left":
        return "left-padding tokenizer (TL derives an attention mask from the tokens)"
    if model.blocks[0].attn.W_Q.dtype not in (torch.float32, torch.float64, torch.bfloat16,
                                              torch.float16):
        return f"parameter dtype {model.blocks[0].attn.W_Q.dtype}"
    return None


def _norm(x: torch.Tensor, module: torch.nn.Module | None, eps: float) -> torch.Tensor:
    if module is None:  # normalization_type=None: TL uses an Identity
        return x
    w = getattr(module, "w", None)
    b = getattr(module, "b", None)
    # TL computes the statistics in fp32 when the model is in lower precision; so does this,
    # and autocast keeps layer_norm in fp32 too.
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def _qkv_weights(attn: torch.nn.Module) -> tuple[Float[torch.Tensor, "d_model qkv"], Float[torch.Tensor, " qkv"]]:
    """``W_Q | W_K | W_V`` as one ``[d_model, (3 head d_head)]`` projection, and its bias.

    The stack is part of the autograd graph, so each head's gradient flows to its own parameter.
    """
    w = torch.cat([attn.W_Q, attn.W_K, attn.W_V]).permute(1, 0, 2)
    return w.reshape(w.shape[0], -1), torch.cat([attn.b_Q, attn.b_K, attn.b_V]).reshape(-1)


def heads_z(model: HookedTransformer, layer: int,
            x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos head_index d_head"]:
    """Block ``layer``'s per-head attention outputs ``z`` (TL's ``hook_z``) from its input residual."""
    cfg = model.cfg
    n_batch, n_pos, d_model = x.shape
    rows, n_heads, d_head = n_batch * n_pos, cfg.n_heads, cfg.d_head
    block = model.blocks[layer]
    attn = block.attn
    norm = cfg.normalization_type is not None
    h = _norm(x, block.ln1 if norm else None, cfg.eps).reshape(rows, d_model)
    w_qkv, b_qkv = _qkv_weights(attn)
    qkv = torch.addmm(b_qkv, h, w_qkv)
    # Unbind along the q/k/v axis and transpose each: the backward then stacks the three
    # gradients straight into qkv's layout (one copy), where permute-then-unbind cost three.
    q, k, v = (t.transpose(1, 2) for t in qkv.view(n_batch, n_pos, 3, n_heads, d_head).unbind(2))
    z = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                       scale=1.0 / float(attn.attn_scale))  # [b, h, p, dh]
    return z.transpose(1, 2)


def _attention_block(model: HookedTransformer, layer: int,
                     x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
    """The residual stream after the whole block ``layer``: attention, then its MLP if any."""
    return resid_after_z(model, layer, x, heads_z(model, layer, x))


ZCallback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def fused_logits_through_z(model: HookedTransformer, tokens: Int[torch.Tensor, "batch pos"],
                           on_z: ZCallback) -> Float[torch.Tensor, "batch pos d_vocab_out"]:
    """Fused logits, calling ``on_z(layer, resid_pre, z)`` where TL has ``hook_z``.

    The callback sees each layer's input residual (``hook_resid_pre``) and ``z``, and returns the
    ``z`` to continue with: what caching or editing ``hook_z`` needs, without hook points.
    """
    x = _embed(model, tokens)
    for layer in range(model.cfg.n_layers):
        x = resid_after_z(model, layer, x, on_z(layer, x, heads_z(model, layer, x)))
    return _unembed(model, x)


def resid_after_z(model: HookedTransformer, layer: int,
                  resid_pre: Float[torch.Tensor, "batch pos d_model"],
                  z: Float[torch.Tensor, "batch pos head_index d_head"]) -> Float[torch.Tensor, "batch pos d_model"]:
    """Block ``layer``'s output residual given its input and its heads' ``z`` (``hook_z``).

    Exact patching of ``hook_z`` needs nothing else from the patched layer: put the patched ``z``
    here and continue with ``fused_logits_from(model, …, layer + 1)``.
    """
    cfg = model.cfg
    n_batch, n_pos, d_model = resid_pre.shape
    rows = n_batch * n_pos
    block = model.blocks[layer]
    attn = block.attn
    z = z.reshape(rows, cfg.n_heads * cfg.d_head)
    x = resid_pre + torch.addmm(attn.b_O, z, attn.W_O.reshape(-1, d_model)).view_as(resid_pre)
    if not cfg.attn_only:
        mlp = block.mlp
        norm = cfg.normalization_type is not None
        h = _norm(x, block.ln2 if norm else None, cfg.eps).reshape(rows, d_model)
        h = ACTIVATIONS[cfg.act_fn](torch.addmm(mlp.b_in, h, mlp.W_in))
        x = x + torch.addmm(mlp.b_out, h, mlp.W_out).view_as(x)
    return x


def fused_logits_from(model: HookedTransformer, resid: Float[torch.Tensor, "batch pos d_model"],
                      start_at_layer: int) -> Float[torch.Tensor, "batch pos d_vocab_out"]:
    """Logits from the residual stream entering block ``start_at_layer`` (``hook_resid_pre``);
    ``start_at_layer = n_layers`` applies only the final norm and the unembedding."""
    x = resid
    for layer in range(start_at_layer, model.cfg.n_layers):
        x = _attention_block(model, layer, x)
    return _unembed(model, x)


def _unembed(model: HookedTransformer,
             x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_vocab_out"]:
    """Final norm and unembedding of the residual stream after the last block."""
    cfg = model.cfg
    h = _norm(x, model.ln_final if cfg.normalization_type is not None else None, cfg.eps)
    logits = torch.addmm(model.unembed.b_U, h.reshape(-1, x.shape[-1]), model.unembed.W_U)
    return logits.view(*x.shape[:-1], -1)


@torch.no_grad()
def fused_suffix_logits(model: HookedTransformer, resid: Float[torch.Tensor, "n suffix d_model"],
                        start_at_layer: int, base_resid_pre: dict[int, torch.Tensor],
                        start_pos: int) -> Float[torch.Tensor, "n suffix d_vocab_out"]:
    """Logits at positions ``≥ start_pos`` of copies of a base run that differ only there.

    Attention is causal, so a change at position ``p`` leaves positions ``< p`` as they were: their
    keys and values at every later layer come from the base run's residual stream
    (``base_resid_pre[layer]``, ``[batch, pos, d_model]``) and only the suffix is recomputed.
    ``resid`` (``n = copies × batch`` rows, the base batch repeated) enters block
    ``start_at_layer``. Inference only (no gradients).
    """
    cfg = model.cfg
    n_rows, n_suffix, d_model = resid.shape
    n_heads, d_head = cfg.n_heads, cfg.d_head
    norm = cfg.normalization_type is not None
    x = resid
    for layer in range(start_at_layer, cfg.n_layers):
        block = model.blocks[layer]
        attn = block.attn
        base = base_resid_pre[layer][:, :start_pos]
        n_batch = base.shape[0]
        copies = n_rows // n_batch
        w_qkv, b_qkv = _qkv_weights(attn)
        h = _norm(x, block.ln1 if norm else None, cfg.eps).reshape(-1, d_model)
        q, k, v = torch.addmm(b_qkv, h, w_qkv).view(n_rows, n_suffix, 3, n_heads, d_head).permute(2, 0, 3, 1, 4).unbind(0)
        if start_pos > 0:
            hb = _norm(base, block.ln1 if norm else None, cfg.eps).reshape(-1, d_model)
            kv = torch.addmm(b_qkv[n_heads * d_head:], hb, w_qkv[:, n_heads * d_head:])
            kv = kv.view(1, n_batch, start_pos, 2, n_heads, d_head).expand(copies, -1, -1, -1, -1, -1)
            kv = kv.reshape(n_rows, start_pos, 2, n_heads, d_head).permute(2, 0, 3, 1, 4)
            k = torch.cat([kv[0], k], dim=2)
            v = torch.cat([kv[1], v], dim=2)
        # query i sits at position start_pos + i and sees keys 0 … start_pos + i
        keys = torch.arange(start_pos + n_suffix, device=x.device)
        queries = torch.arange(start_pos, start_pos + n_suffix, device=x.device)
        mask = keys[None, :] <= queries[:, None]
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           scale=1.0 / float(attn.attn_scale))
        x = resid_after_z(model, layer, x, z.transpose(1, 2))
    return _unembed(model, x)


def fused_logits(model: HookedTransformer,
                 tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos d_vocab_out"]:
    """The model's logits on ``tokens`` computed without hooks (see the module docstring)."""
    return fused_logits_from(model, _embed(model, tokens), 0)


def _embed(model: HookedTransformer, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos d_model"]:
    # F.embedding's backward is a dense scatter-add, several times cheaper than indexing's index_put.
    return F.embedding(tokens, model.embed.W_E) + model.pos_embed.W_pos[:tokens.shape[1]]


def fused_loss(model: HookedTransformer, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, ""]:
    """Mean next-token cross-entropy, as ``model(tokens, return_type="loss")`` computes it."""
    x = _embed(model, tokens)
    for layer in range(model.cfg.n_layers):
        x = _attention_block(model, layer, x)
    # The last position predicts nothing: unembed only the rows the loss reads (each row's
    # logits are computed independently, so this is the same numbers as slicing full logits).
    logits = _unembed(model, x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1))


def has_hooks(model: HookedTransformer) -> bool:
    """Whether any hook point of ``model`` has a forward or backward hook attached."""
    return any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values())


def can_fuse(model: Any) -> bool:
    """Whether the fused forward computes ``model``'s own function now (no hooks to honour)."""
    return unsupported_reason(model) is None and not has_hooks(model)


@dataclass
class _Plan:
    reason: str | None
    loss: Callable[[HookedTransformer, torch.Tensor], torch.Tensor]
    logits: Callable[[HookedTransformer, torch.Tensor], torch.Tensor]


class FastForward:
    """The fused forward for one model, or its hooked forward when fusing does not apply.

    ``compile=True`` wraps the fused loss in ``torch.compile`` (worth it for long runs: the first
    step pays tens of seconds of compilation on CPU). ``bf16=True`` runs under bfloat16 autocast.
    ``.fused`` says which path runs; ``.reason`` says why not when it is the hooked one.
    """

    def __init__(self, model: HookedTransformer, *, compile: bool = False, bf16: bool = False):
        self.model = model
        self.bf16 = bf16
        self.compile = compile
        self.reason = unsupported_reason(model)
        loss_fn, logits_fn = fused_loss, fused_logits
        if compile and self.reason is None:
            loss_fn = torch.compile(fused_loss, dynamic=False)
        self._plan = _Plan(self.reason, loss_fn, logits_fn)

    @property
    def fused(self) -> bool:
        """True when this model runs on the fused forward (False: TransformerLens' own, see ``reason``)."""
        return self.reason is None

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        device_type = "cuda" if self.model.cfg.device and str(self.model.cfg.device).startswith("cuda") else "cpu"
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)

    def loss(self, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, ""]:
        """Mean next-token cross-entropy of ``tokens`` (nats per predicted token), as float32."""
        with self._autocast():
            if self.reason is not None or has_hooks(self.model):
                return self.model(tokens, return_type="loss").float()
            # Compiled graphs are specialised on strides: a sliced batch would recompile.
            return self._plan.loss(self.model, tokens.contiguous())

    def logits(self, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos d_vocab_out"]:
        """Next-token logits of ``tokens``, one row of vocabulary logits per position."""
        with self._autocast():
            if self.reason is not None or has_hooks(self.model):
                return self.model(tokens, return_type="logits")
            return self._plan.logits(self.model, tokens)

    __call__ = logits


# One FastForward per (model, options): the training seam passes only (model, tokens).
_CACHE: "weakref.WeakKeyDictionary[HookedTransformer, dict[tuple, FastForward]]" = weakref.WeakKeyDictionary()


def fast_forward(model: HookedTransformer, *, compile: bool = False, bf16: bool = False) -> FastForward:
    """The (cached) ``FastForward`` of ``model`` with these options."""
    per_model = _CACHE.setdefault(model, {})
    key = (compile, bf16)
    if key not in per_model:
        per_model[key] = FastForward(model, compile=compile, bf16=bf16)
    return per_model[key]


def fast_loss(model: HookedTransformer, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, ""]:
    """Training-seam loss: fused fp32 forward (hooked when fusing does not apply)."""
    return fast_forward(model).loss(tokens)


def fast_loss_bf16(model: HookedTransformer, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, ""]:
    """Training-seam loss: fused forward under bfloat16 autocast."""
    return fast_forward(model, bf16=True).loss(tokens)


def fast_loss_compiled(model: HookedTransformer,
                       tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, ""]:
    """Training-seam loss: the fused forward through ``torch.compile`` (for long runs)."""
    return fast_forward(model, compile=True).loss(tokens)


def fast_loss_compiled_bf16(model: HookedTransformer,
                            tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, ""]:
    """Training-seam loss: the compiled fused forward under bfloat16 autocast."""
    return fast_forward(model, compile=True, bf16=True).loss(tokens)
