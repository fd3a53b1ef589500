"""Reddy (2023) Eq. 10: a three-parameter loss landscape for induction-head formation.

    ℒ = log(1 + (N−1)·e^{−z} + (L−N)·e^{−z'}),
    z = ((e^y − 1)/(e^y + 2N))·ξ,   z' = (e^y/(e^y + 2N))·ξ,   y = α·e^{β₁}/(e^{β₁} + N).

Three nested logits: ``β₁`` (layer 1: attend to the previous token), ``α`` (layer 2: match the
target's content against the buffered previous item) and ``ξ`` (the classifier's alignment of its
regression vectors with the labels). ``N`` item–label pairs in the context, ``L`` labels.

Gradient descent from the origin shows the paper's slow phase and cliff when ``L > N``: only ``ξ``
has a gradient at the origin, ``∂ℒ/∂ξ = −(L−N)/(L(2N+1))``, so the classifier first slowly learns
to pick one of the context's labels; that growing ``ξ`` turns on the gradients of ``α`` and
``β₁``, and the loss falls off a cliff. With ``L = N`` the origin is a saddle (all gradients
vanish) and where a run ends depends on which side of it it starts.

Everything is closed form; the gradient is written out (and checked against autograd in the
tests), so thousands of steps for many starting points take milliseconds.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PARAMS = ("xi", "alpha", "beta1")


def _parts(p: np.ndarray, n: int, n_labels: int):
    xi, alpha, beta1 = p[..., 0], p[..., 1], p[..., 2]
    e = np.exp(beta1)
    s = e / (e + n)
    y = alpha * s
    u = np.exp(y)
    z = (u - 1) / (u + 2 * n) * xi
    zp = u / (u + 2 * n) * xi
    a = (n - 1) * np.exp(-z)
    b = (n_labels - n) * np.exp(-zp)
    d = 1 + a + b
    return xi, alpha, e, s, u, a, b, d


def loss(p: np.ndarray, n: int = 8, n_labels: int = 32) -> np.ndarray | float:
    """Eq. 10 at parameters ``p[..., (ξ, α, β₁)]`` (nats), shape ``p.shape[:-1]``; one point gives a float."""
    *_, d = _parts(np.asarray(p, dtype=np.float64), n, n_labels)
    return np.log(d)


def gradient(p: np.ndarray, n: int = 8, n_labels: int = 32) -> np.ndarray:
    """``∂ℒ/∂(ξ, α, β₁)`` in closed form, same shape as ``p``."""
    p = np.asarray(p, dtype=np.float64)
    xi, alpha, e, s, u, a, b, d = _parts(p, n, n_labels)
    dz, dzp = -a / d, -b / d  # ∂ℒ/∂z, ∂ℒ/∂z'
    w = u + 2 * n
    g_xi = dz * (u - 1) / w + dzp * u / w
    g_y = xi * u * (dz * (2 * n + 1) + dzp * 2 * n) / w**2
    g_alpha = g_y * s
    g_beta1 = g_y * alpha * e * n / (e + n) ** 2
    return np.stack([g_xi, g_alpha, g_beta1], axis=-1)


@dataclass
class Trajectory:
    """Gradient descent on Eq. 10: per-step loss and parameters (row 0 is the start)."""

    n: int
    n_labels: int
    lr: float
    loss: np.ndarray  # [steps + 1]
    params: np.ndarray  # [steps + 1, 3]: ξ, α, β₁
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Number of gradient steps taken (rows of ``loss`` minus one)."""
        return len(self.loss) - 1

    def param(self, name: str) -> np.ndarray:
        """One parameter's (``xi``/``alpha``/``beta1`` per ``PARAMS``) value at every step, ``[steps + 1]``."""
        return self.params[:, PARAMS.index(name)]

    def cliff_step(self) -> int:
        """The step of the steepest loss drop."""
        return int(np.argmin(np.diff(self.loss)))

    def rise_step(self, name: str, fraction: float = 0.5) -> int | None:
        """First step where parameter ``name`` reaches ``fraction`` of its final value."""
        v = self.param(name)
        final = v[-1]
        if final == v[0]:
            return None
        hit = np.nonzero((v - v[0]) / (final - v[0]) >= fraction)[0]
        return int(hit[0]) if len(hit) else None

    def to_dict(self) -> dict[str, Any]:
        """Summary as a JSON-ready dict: losses (nats), cliff step, final parameters, half-rise steps."""
        return {"n": self.n, "n_labels": self.n_labels, "lr": self.lr, "steps": self.steps,
                "initial_loss": float(self.loss[0]), "final_loss": float(self.loss[-1]),
                "cliff_step": self.cliff_step(),
                "final": dict(zip(PARAMS, map(float, self.params[-1]))),
                "half_rise_step": {k: self.rise_step(k) for k in PARAMS},
                "notes": list(self.notes)}


def descend(n: int = 8, n_labels: int = 32, *, start: tuple[float, float, float] = (0.0, 0.0, 0.0),
            lr: float = 0.1, steps: int = 3000) -> Trajectory:
    """Plain gradient descent on Eq. 10 from ``start = (ξ, α, β₁)`` (the paper starts at 0)."""
    if n < 1 or n_labels < n:
        from ..errors import ConfigError
        raise ConfigError(f"need 1 ≤ N ≤ L, got N={n}, L={n_labels}")
    p = np.array(start, dtype=np.float64)
    params = np.empty((steps + 1, 3))
    params[0] = p
    for t in range(steps):
        p = p - lr * gradient(p, n, n_labels)
        params[t + 1] = p
    return Trajectory(n, n_labels, lr, loss(params, n, n_labels), params)
