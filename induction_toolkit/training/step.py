"""The hot path's forward pass, behind one seam.

A loss function takes ``(model, tokens)`` and returns the mean next-token loss. The training loop
looks it up by name (``TrainConfig.loss_fn``), so a faster fused forward — same weights format,
checked numerically against the hooked one — can be registered here without touching the loop.
The default is the fused forward (``"fast"``); ``"hooked"`` runs the plain ``HookedTransformer``
forward. Neither runs a cache or hooks it does not need (dropout, when asked for, is the only hook
added, and it sends the fused path through the hooked forward).
"""

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from transformer_lens import HookedTransformer

from ..errors import ConfigError
from ..fast_forward import fast_loss, fast_loss_bf16, fast_loss_compiled, fast_loss_compiled_bf16

LossFn = Callable[[HookedTransformer, Int[torch.Tensor, "batch pos"]], Float[torch.Tensor, ""]]


def hooked_loss(model: HookedTransformer, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, ""]:
    """Mean next-token cross-entropy (nats) through TransformerLens' own forward."""
    return model(tokens, return_type="loss")


# "fast*": the fused forward of ``fast_forward`` (same math, checked in tests/test_fast_forward.py);
# it runs the hooked forward itself for configs it cannot fuse or when hooks (dropout) are attached.
LOSS_FNS: dict[str, LossFn] = {"hooked": hooked_loss, "fast": fast_loss,
                               "fast-bf16": fast_loss_bf16, "fast-compiled": fast_loss_compiled,
                               "fast-compiled-bf16": fast_loss_compiled_bf16}


def optimizer_options(loss_fn: str) -> dict:
    """AdamW options for a loss function: the fast paths also take the fused (one-kernel) AdamW."""
    return {"fused": True} if loss_fn != "hooked" else {}


def get_loss_fn(name: str) -> LossFn:
    """The loss function registered as ``name`` in ``LOSS_FNS`` (returns nats per token)."""
    if name not in LOSS_FNS:
        raise ConfigError(f"unknown loss function '{name}'; one of: {', '.join(LOSS_FNS)}")
    return LOSS_FNS[name]


def dropout_hooks(model: HookedTransformer, p: float) -> list[tuple[str, Callable]]:
    """Attention-pattern and residual-write dropout (HookedTransformer has none of its own)."""
    if p <= 0:
        return []

    def drop(x, hook):
        return torch.nn.functional.dropout(x, p=p, training=model.training)

    names = []
    for layer in range(model.cfg.n_layers):
        names += [f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.hook_attn_out"]
        if not model.cfg.attn_only:
            names.append(f"blocks.{layer}.hook_mlp_out")
    return [(n, drop) for n in names]
