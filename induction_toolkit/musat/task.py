"""The minimal ICL task: ``N`` item–label pairs, then a query item; the target is its label.

Layout (0-based positions): ``x₁ y₁ x₂ y₂ … x_N y_N x_q`` with ``x_q = x_k`` for a pair ``k`` drawn
uniformly; length ``L = 2N + 1``. Two item families:

- ``orthonormal`` (default; the theorem's setting, ``D ≥ 2N``): a sequence uses ``2N`` distinct axes
  of ``ℝ^D``, each with a random sign, so every item and label is ``±e_a``. As tokens: token
  ``2a`` is ``+e_a``, token ``2a + 1`` is ``−e_a`` (vocabulary ``2D``). The random signs make the
  distribution invariant under every signed permutation of the axes, whose only invariant matrices
  are multiples of ``I``, as for isotropic items.
- ``gaussian``: items and labels i.i.d. ``N(0, I/D)``; not tokens (no ``HookedTransformer`` export).
"""

import itertools
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

ITEMS = ("orthonormal", "gaussian")


@dataclass
class Batch:
    """Content vectors ``x`` [batch, L, D], tokens (None for Gaussian items), the query's pair and target."""

    x: Float[torch.Tensor, "batch pos d"]
    tokens: Int[torch.Tensor, "batch pos"] | None
    pair: Int[torch.Tensor, " batch"]
    target: Int[torch.Tensor, " batch"] | None


def token_embedding(d: int, dtype: torch.dtype = torch.float64) -> Float[torch.Tensor, "vocab d"]:
    """The fixed orthonormal item embedding: row ``2a`` is ``+e_a``, row ``2a + 1`` is ``−e_a``."""
    eye = torch.eye(d, dtype=dtype)
    return torch.stack([eye, -eye], dim=1).reshape(2 * d, d)


def _from_tokens(tokens: torch.Tensor, pair: torch.Tensor, d: int, dtype: torch.dtype) -> Batch:
    x = token_embedding(d, dtype)[tokens]
    target = tokens[torch.arange(len(tokens)), 2 * pair + 1]
    return Batch(x=x, tokens=tokens, pair=pair, target=target)


def sample_batch(n_pairs: int, d: int, batch: int, generator: torch.Generator, *,
                 items: str = "orthonormal", dtype: torch.dtype = torch.float64) -> Batch:
    """``batch`` fresh sequences of the task (see the module docstring)."""
    pair = torch.randint(n_pairs, (batch,), generator=generator)
    if items == "gaussian":
        ctx = torch.randn(batch, 2 * n_pairs, d, generator=generator, dtype=dtype) / d ** 0.5
        query = ctx[torch.arange(batch), 2 * pair][:, None]
        return Batch(x=torch.cat([ctx, query], 1), tokens=None, pair=pair, target=None)
    if items != "orthonormal":
        raise ValueError(f"items must be one of {ITEMS}, got {items!r}")
    if d < 2 * n_pairs:
        raise ValueError(f"orthonormal items need D ≥ 2N, got D={d}, N={n_pairs}")
    axes = torch.rand(batch, d, generator=generator).argsort(-1)[:, :2 * n_pairs]
    signs = torch.randint(2, (batch, 2 * n_pairs), generator=generator)
    ctx = 2 * axes + signs
    tokens = torch.cat([ctx, ctx[torch.arange(batch), 2 * pair][:, None]], 1)
    return _from_tokens(tokens, pair, d, dtype)


def population(n_pairs: int, d: int, dtype: torch.dtype = torch.float64) -> Batch:
    """Every sequence of the orthonormal task with ``D = 2N`` exactly once (the population).

    ``(2N)! · 2^{2N} · N`` sequences: 768 for ``N = 2``; the exact population loss, so the
    trajectory keeps every symmetry of the data (only tiny ``N`` is practical).
    """
    if d != 2 * n_pairs or n_pairs > 3:
        raise ValueError("the enumerated population needs D = 2N and N ≤ 3")
    rows, pairs = [], []
    for perm in itertools.permutations(range(d)):
        for signs in itertools.product((0, 1), repeat=d):
            ctx = [2 * a + s for a, s in zip(perm, signs)]
            for k in range(n_pairs):
                rows.append(ctx + [ctx[2 * k]])
                pairs.append(k)
    return _from_tokens(torch.tensor(rows), torch.tensor(pairs), d, dtype)
