"""Reddy (2023)'s minimal induction-head model (Eqs. 4–6): three scalars stacked on the same classifier.

Each token's content ``u^(c)`` (its last ``D`` dimensions; positions are not used) and an empty
buffer ``u^(b)``. Layer 1 copies the previous token's content into the buffer:
``v_i^(b) = Σ_{j≤i} q¹_ij u_j^(c)``, ``q¹_ij = softmax_j(β₁ δ_{i−1,j})``. Layer 2 lets the target
match its content against the buffers: ``w_i^(b) = Σ_{j≤i} q²_ij v_j^(c)``,
``q²_ij = softmax_j(α v_j^(b)·v_i^(c) + β₂ Δ_ij)`` with ``Δ_ij = 1`` when ``i − j`` is odd (a label,
seen from the target). The classifier (three hidden ReLU layers of 128, as the full network's)
reads ``w_n^(c) ⊕ w_n^(b)``. ``β₁`` drives ILA1, ``α`` TILA2 and ``β₂`` TLA2; ``fix_beta2=True``
is the paper's two-parameter model (β₂ = 0: the target cannot prefer labels over items).

Its attention patterns are exposed at TransformerLens' hook names (``blocks.{0,1}.attn.hook_pattern``,
``[batch, 1, query, key]``), so :func:`induction_toolkit.reddy.progress.evaluate` measures it
like the full network.
"""

import math

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from .network import HIDDEN


class _Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.hook_pattern = HookPoint()


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = _Attn()


class MinimalInductionModel(HookedRootModule):
    """β₁, α, β₂ (all starting at 0) and a ReLU MLP classifier over ``2D`` inputs → ``L`` logits."""

    def __init__(self, D: int, n_labels: int, *, fix_beta2: bool = False, hidden: int = HIDDEN,
                 n_hidden_layers: int = 3, seed: int | None = None):
        super().__init__()
        self.D = D
        self.beta1 = nn.Parameter(torch.zeros(()))
        self.alpha = nn.Parameter(torch.zeros(()))
        self.beta2 = nn.Parameter(torch.zeros(()), requires_grad=not fix_beta2)
        self.blocks = nn.ModuleList([_Block(), _Block()])
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        layers: list[nn.Module] = []
        width = 2 * D
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, n_labels))
        with torch.no_grad():
            for m in layers:
                if isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                    m.bias.zero_()
        self.classifier = nn.Sequential(*layers)
        self.setup()

    def forward(self, inputs: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch n_labels"]:
        """Label logits for sequences of the reddy task (only the content dimensions are read)."""
        u = inputs[..., -self.D:]
        seq = u.shape[1]
        i = torch.arange(seq)
        causal = i[None, :] > i[:, None]
        prev = (i[None, :] == i[:, None] - 1).float()
        q1 = (self.beta1 * prev).masked_fill(causal, float("-inf")).softmax(-1)  # [q, k]
        q1 = self.blocks[0].attn.hook_pattern(q1.expand(u.shape[0], 1, seq, seq))
        buffer = q1[:, 0] @ u  # v^(b)
        odd = ((i[:, None] - i[None, :]) % 2 == 1).float()[-1]  # the target's row of Δ
        scores = self.alpha * (buffer @ u[:, -1:].transpose(1, 2))[..., 0] + self.beta2 * odd
        q2 = self.blocks[1].attn.hook_pattern(scores.softmax(-1)[:, None, None, :])  # [b, 1, 1, k]
        read = (q2[:, 0] @ u)[:, 0]  # w_n^(b)
        return self.classifier(torch.cat([u[:, -1], read], dim=-1))

    fast_forward = forward

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters SGD updates (β₂ left out when fixed at 0)."""
        return [p for p in self.parameters() if p.requires_grad]

    def scalars(self) -> dict[str, float]:
        """β₁, α, β₂ now."""
        return {"beta1": self.beta1.item(), "alpha": self.alpha.item(), "beta2": self.beta2.item()}
