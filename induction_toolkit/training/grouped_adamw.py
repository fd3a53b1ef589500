"""AdamW for a group of runs: per-member hyper-parameters and state, whole-buffer updates.

The update is ``torch.optim.AdamW``'s (decoupled weight decay, bias-corrected moments, ``eps``
outside the square root), applied to the ``[G, N]`` parameter buffer of a
:class:`~induction_toolkit.grouped_forward.GroupedModel` with each member's learning rate, betas
and weight decay as ``[G, 1]`` factors, so a step is a dozen operations whatever G is.

A member that does not step (diverged, or ahead of the others after a resume) gets identity
factors: learning rate 0, ``1 - β₁ = 0``, ``β₂ = 1``, no decay. On finite values that leaves its
weights and moments bit for bit as they were, and its step count does not advance.

Each member's state converts to and from an ordinary ``torch.optim.AdamW`` of that member's model
(:meth:`GroupedAdamW.store_member` / :meth:`load_member`), so a member's ``train_state.pt`` is a
single run's and either kind of run resumes from it.
"""

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float

from ..grouped_forward import GroupedModel


class GroupedAdamW:
    """AdamW over a ``GroupedModel``'s flat parameter buffer, one set of hyper-parameters per member."""

    def __init__(self, model: GroupedModel, *, betas: Sequence[Sequence[float]],
                 weight_decay: Sequence[float], eps: float = 1e-8):
        n = model.n_members
        if len(betas) != n or len(weight_decay) != n:
            raise ValueError("one betas pair and one weight decay per member")
        self.model = model
        self.betas = [(float(b1), float(b2)) for b1, b2 in betas]
        self.weight_decay = [float(w) for w in weight_decay]
        self.eps = eps
        self.exp_avg = torch.zeros_like(model.flat)
        self.exp_avg_sq = torch.zeros_like(model.flat)
        self.steps = [0] * n  # optimizer steps each member has taken

    def _factors(self, values: Sequence[float]) -> Float[torch.Tensor, "member 1"]:
        return torch.tensor(values, dtype=self.model.flat.dtype,
                            device=self.model.flat.device).view(-1, 1)

    @torch.no_grad()
    def step(self, lr: Sequence[float], active: Sequence[bool]) -> None:
        """One update of every ``active`` member with its learning rate ``lr[g]``."""
        decay, w1, b2, one_minus_b2, step_size, bc2_sqrt = [], [], [], [], [], []
        for g, on in enumerate(active):
            beta1, beta2 = self.betas[g]
            if on:
                self.steps[g] += 1
            t = max(self.steps[g], 1)
            decay.append(1.0 - lr[g] * self.weight_decay[g] if on else 1.0)
            w1.append(1.0 - beta1 if on else 0.0)
            b2.append(beta2 if on else 1.0)
            one_minus_b2.append(1.0 - beta2 if on else 0.0)
            step_size.append(lr[g] / (1.0 - beta1 ** t) if on else 0.0)
            bc2_sqrt.append(math.sqrt(1.0 - beta2 ** t))
        p, grad = self.model.flat, self.model.grad
        m, v = self.exp_avg, self.exp_avg_sq
        p.mul_(self._factors(decay))
        m.lerp_(grad, self._factors(w1))
        v.mul_(self._factors(b2)).add_(grad * grad * self._factors(one_minus_b2))
        denom = v.sqrt().div_(self._factors(bc2_sqrt)).add_(self.eps)
        p.sub_(m / denom * self._factors(step_size))

    # --- one member as a torch.optim.AdamW --------------------------------------------------

    @torch.no_grad()
    def store_member(self, g: int, optimizer: torch.optim.AdamW, lr: float) -> None:
        """Write member ``g``'s state into ``optimizer``, an AdamW over that member's model.

        The model's parameters must be in ``named_parameters()`` order in the optimizer (as
        ``training.loop.make_optimizer`` builds it); the state tensors are copies.
        """
        group = optimizer.param_groups[0]
        group["lr"] = lr
        if self.steps[g] == 0:
            optimizer.state.clear()
            return
        for name, param in zip(self.model.names, group["params"]):
            on_device = group.get("fused") or group.get("capturable")
            step = torch.tensor(float(self.steps[g]), dtype=torch.float32,
                                device=param.device if on_device else "cpu")
            optimizer.state[param] = {
                "step": step,
                "exp_avg": self.model.member_tensor(self.exp_avg, g, name).clone(),
                "exp_avg_sq": self.model.member_tensor(self.exp_avg_sq, g, name).clone(),
            }

    @torch.no_grad()
    def load_member(self, g: int, optimizer: torch.optim.AdamW) -> None:
        """Take member ``g``'s state from ``optimizer`` (empty state: a member yet to step)."""
        group = optimizer.param_groups[0]
        states = [optimizer.state.get(param) for param in group["params"]]
        if not any(states):
            self.exp_avg[g].zero_()
            self.exp_avg_sq[g].zero_()
            self.steps[g] = 0
            return
        for name, state in zip(self.model.names, states):
            self.model.member_tensor(self.exp_avg, g, name).copy_(state["exp_avg"])
            self.model.member_tensor(self.exp_avg_sq, g, name).copy_(state["exp_avg_sq"])
        self.steps[g] = int(float(states[0]["step"]))
