"""Reddy (2023)'s network: two causal one-head attention layers with residuals, then a ReLU MLP classifier.

``v_i = u_i + V₁ Σ_j p¹_ij u_j``, ``w_i = v_i + V₂ Σ_j p²_ij v_j`` with ``p^μ = softmax_j((K_μ u_j)ᵀ(Q_μ u_i))``
(no 1/√d scaling, no biases, no layer norm), and a classifier reading ``w`` at the target (the
last position): three hidden ReLU layers of 128 then a linear read-out to ``L`` label logits.
Query/key dimension 128. The inputs are continuous vectors (:mod:`induction_toolkit.tasks.reddy`),
so there is no token embedding.

The attention layers are TransformerLens ``TransformerBlock``s inside a ``HookedRootModule``, so
the hook names are TransformerLens': ``hook_embed`` (the input), ``blocks.{l}.hook_resid_pre``,
``blocks.{l}.attn.hook_pattern``, ``blocks.{l}.attn.hook_z``, ``blocks.{l}.hook_attn_out``,
``blocks.{l}.hook_resid_post``; ``run_with_cache`` and ``run_with_hooks`` work as on any
``HookedTransformer``. The value/output pair ``W_V·W_O`` (each ``d × 128``) plays the paper's ``V``.

Init: every weight matrix from ``N(0, 1/fan_in)`` (the author's code's ``1/√D`` scale), biases
zero; the attention biases stay zero (frozen), as the paper's equations have none.
"""

import math

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens import HookedTransformerConfig
from transformer_lens.components import TransformerBlock
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

HIDDEN = 128


def network_config(d_model: int, seq_len: int, n_labels: int, d_head: int = HIDDEN) -> HookedTransformerConfig:
    """The TransformerLens config of the attention part (``d_vocab`` is the number of labels)."""
    return HookedTransformerConfig(
        n_layers=2, d_model=d_model, n_ctx=seq_len, d_head=d_head, n_heads=1, attn_only=True,
        normalization_type=None, d_vocab=n_labels, act_fn="relu", attn_scale=1.0,
        positional_embedding_type="standard", model_name="reddy", default_prepend_bos=False)


class ReddyNetwork(HookedRootModule):
    """The two-layer attention-only network and its classifier; ``forward`` gives label logits."""

    def __init__(self, d_model: int, seq_len: int, n_labels: int, *, hidden: int = HIDDEN,
                 n_hidden_layers: int = 3, seed: int | None = None):
        super().__init__()
        self.cfg = network_config(d_model, seq_len, n_labels, hidden)
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList([TransformerBlock(self.cfg, layer) for layer in range(2)])
        layers: list[nn.Module] = []
        width = d_model
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, n_labels))
        self.classifier = nn.Sequential(*layers)
        self.hook_classifier_in = HookPoint()
        self.init_weights(seed)
        self.setup()

    def init_weights(self, seed: int | None = None) -> None:
        """Every matrix from ``N(0, 1/fan_in)``, biases zero (attention biases frozen at zero)."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            for block in self.blocks:
                a = block.attn
                for w in (a.W_Q, a.W_K, a.W_V):  # [heads, d_model, d_head]: fan-in d_model
                    w.copy_(torch.randn(w.shape, generator=g) / math.sqrt(w.shape[1]))
                a.W_O.copy_(torch.randn(a.W_O.shape, generator=g) / math.sqrt(a.W_O.shape[1]))
                for b in (a.b_Q, a.b_K, a.b_V, a.b_O):
                    b.zero_()
                    b.requires_grad_(False)
            for m in self.classifier:
                if isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                    m.bias.zero_()

    def residual(self, inputs: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        """The residual stream after both attention layers (``w`` at every position)."""
        x = self.hook_embed(inputs)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, inputs: Float[torch.Tensor, "batch pos d_model"], return_type: str | None = "logits", *,
                start_at_layer: int | None = None) -> Float[torch.Tensor, "batch n_labels"] | None:
        """Label logits from the target's (last position's) final residual.

        ``return_type`` and ``start_at_layer`` mean what they mean for a ``HookedTransformer``
        (``inputs`` is then the residual entering that layer), so the causal engine patches this
        network as it patches any other model.
        """
        if return_type not in ("logits", None):
            raise ValueError(f"return_type must be 'logits' or None, got {return_type!r}")
        if start_at_layer is None:
            x = self.residual(inputs)
        else:
            x = inputs
            for block in self.blocks[start_at_layer:]:
                x = block(x)
        logits = self.classifier(self.hook_classifier_in(x[:, -1]))
        return logits if return_type == "logits" else None

    def fast_forward(self, inputs: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch n_labels"]:
        """``forward``'s logits without hooks, for training: the same math, less work.

        Layer 2 only matters at the target (the classifier reads nothing else), so its query,
        attention row and output are computed for the last position alone; biases are omitted
        because they are frozen at zero. Equal to ``forward`` within float error (tested).
        """
        a1, a2 = self.blocks[0].attn, self.blocks[1].attn
        seq = inputs.shape[1]
        q = inputs @ a1.W_Q[0]
        k = inputs @ a1.W_K[0]
        scores = (q @ k.transpose(1, 2)).masked_fill(
            torch.ones(seq, seq, dtype=torch.bool, device=inputs.device).triu(1), float("-inf"))
        v = inputs + (scores.softmax(-1) @ (inputs @ a1.W_V[0])) @ a1.W_O[0]
        last = v[:, -1:]
        att2 = ((last @ a2.W_Q[0]) @ (v @ a2.W_K[0]).transpose(1, 2)).softmax(-1)  # [batch, 1, pos]
        w = last + (att2 @ (v @ a2.W_V[0])) @ a2.W_O[0]
        return self.classifier(w[:, 0])

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters SGD updates (everything but the frozen attention biases)."""
        return [p for p in self.parameters() if p.requires_grad]
