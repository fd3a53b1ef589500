"""Reddy (2023)'s in-context classification data: item–label pairs then a target, as continuous vectors.

A sequence is ``x₁ ℓ₁ x₂ ℓ₂ … x_N ℓ_N x_q`` (``2N+1`` tokens). Every token lives in ``P + D``
dimensions: a one-hot position in the first ``P`` (the sequence occupies a random window of
``2N+1`` consecutive positions inside ``[0, P)``, drawn per sequence) and its content in the last
``D``. Items come from a Gaussian mixture of ``K`` classes, means ``μ_k ~ N(0, I/D)``, an item being
``(μ_k + ε·η)/√(1+ε²)`` with ``η ~ N(0, I/D)`` (so its norm is ≈ 1). Each class maps to one of
``L`` labels, ``K/L`` classes per label (balanced); the label vectors are drawn once from
``N(0, I/D)`` and never change. Class frequencies follow a Zipf law ``f(k) ∝ k^{-α}``.

Training sequences (one distribution for the whole run, ``step`` never changes it):

- with probability ``p_novel`` (the paper's ``p_C``) an in-context sequence: ``N/B`` novel classes
  (means drawn anew), each shown ``B`` times, given distinct labels; the target is one of them;
- otherwise, with probability ``p_bursty`` (``p_B``) a bursty one: the target's class (Zipf) and
  ``N/B − 1`` other classes with labels distinct from each other and the target's, each ``B``
  times, shuffled;
- otherwise (and always when ``B = 0``) every item's and the target's class i.i.d. from Zipf.

Evaluation sets (:meth:`ReddyTask.eval_set`): ``iw`` (in-weights: i.i.d. classes, the target's
class absent from the context), ``ic`` (in-context: novel classes, ``max(B, 1)`` copies of the
target's), ``swapped`` (existing classes, bursty, every context class shown with another label
than its own: the answer is the swapped label). Chance is ``1/L`` on every set; a model that picks
one of the context's labels at random scores ``1/(N/max(B,1))`` on ``ic``/``swapped``.

Where the paper is silent (the label of a novel class, the shape of a bursty sequence's other
classes under Zipf) the choices are stated here: labels of the classes in one bursty or novel
sequence are distinct, so each label appears ``B`` times (the paper: "each label in an input
sequence appears the same number of times"); the other classes are drawn one at a time from the
Zipf law restricted to classes whose label is still unused.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int

from ..errors import ConfigError

EVAL_SETS = ("iw", "ic", "swapped")


@dataclass
class ReddyBatch:
    """A batch of sequences: inputs, the target's label and what the progress measures need."""

    inputs: Float[torch.Tensor, "batch pos d_model"]
    target: Int[torch.Tensor, " batch"]  # label index of the target, in [0, L)
    context_labels: Int[torch.Tensor, "batch n"]  # label index of each of the N label tokens
    classes: Int[torch.Tensor, "batch n_plus_1"]  # class of each item then the target's; -1 novel
    correct_label_mask: Bool[torch.Tensor, "batch n"] = field(init=False)

    def __post_init__(self) -> None:
        self.correct_label_mask = self.context_labels == self.target[:, None]

    def __len__(self) -> int:
        return self.inputs.shape[0]


@dataclass(frozen=True)
class ReddyConfig:
    """The data parameters (paper defaults except K, B, p_B, p_C: the author's code's run)."""

    name: str = "reddy"
    K: int = 512  # classes
    N: int = 8  # item–label pairs before the target
    L: int = 32  # labels
    B: int = 2  # burstiness: copies of each class in a bursty sequence (0: i.i.d. classes)
    p_bursty: float = 1.0  # p_B
    p_novel: float = 0.0  # p_C
    eps: float = 0.1  # within-class variability ε
    alpha: float = 0.0  # Zipf exponent
    D: int = 63  # content dimensions
    P: int = 65  # position dimensions (one-hot)

    def __post_init__(self) -> None:
        for name in ("K", "N", "L", "D", "P"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.B < 0:
            raise ConfigError(f"B must be ≥ 0, got {self.B}")
        if self.B > 0 and self.N % self.B:
            raise ConfigError(f"N must be a multiple of B, got N={self.N}, B={self.B}")
        if self.L > self.K:
            raise ConfigError(f"need L ≤ K, got L={self.L}, K={self.K}")
        if self.K % self.L:
            raise ConfigError(f"K must be a multiple of L (K/L classes per label), got K={self.K}, L={self.L}")
        if self.N // max(self.B, 1) > self.L:
            raise ConfigError(f"a bursty sequence needs N/B={self.N // max(self.B, 1)} distinct labels; L={self.L}")
        if 2 * self.N + 1 > self.P:
            raise ConfigError(f"need 2N+1 ≤ P (the sequence's positions), got 2N+1={2 * self.N + 1}, P={self.P}")
        for name in ("p_bursty", "p_novel"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ConfigError(f"{name.replace('_', '-')} must be in [0, 1], got {v}")
        if not self.eps >= 0:
            raise ConfigError(f"eps must be ≥ 0, got {self.eps}")
        if not self.alpha >= 0:
            raise ConfigError(f"alpha must be ≥ 0, got {self.alpha}")

    @property
    def seq_len(self) -> int:
        """Tokens per sequence, ``2N + 1``."""
        return 2 * self.N + 1

    @property
    def d_model(self) -> int:
        """Dimensions of a token, ``P + D``."""
        return self.P + self.D

    def build(self, seed: int) -> "ReddyTask":
        """The task with its class means, label vectors and class→label map drawn from ``seed``."""
        return ReddyTask(self, seed)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)


def zipf_probs(K: int, alpha: float) -> Float[torch.Tensor, " K"]:
    """``f(k) ∝ k^{-α}`` for ranks ``k = 1..K`` (class ``k-1`` has rank ``k``), normalised."""
    f = torch.arange(1, K + 1, dtype=torch.float64) ** (-alpha)
    return f / f.sum()


class ReddyTask:
    """The data world of one run: ``K`` class means, ``L`` label vectors and a balanced class→label map."""

    def __init__(self, config: ReddyConfig, seed: int):
        self.config = config
        self.seed = seed
        c = config
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + 17)
        self.class_means = torch.randn(c.K, c.D, generator=g) / math.sqrt(c.D)
        self.label_vectors = torch.randn(c.L, c.D, generator=g) / math.sqrt(c.D)
        self.class_label = (torch.arange(c.K) % c.L)[torch.randperm(c.K, generator=g)]
        self.class_probs = zipf_probs(c.K, c.alpha).float()

    # --- drawing ---------------------------------------------------------------------------

    def _items(self, means: Float[torch.Tensor, "*s D"], g: torch.Generator) -> Float[torch.Tensor, "*s D"]:
        eps = self.config.eps
        noise = torch.randn(means.shape, generator=g) / math.sqrt(self.config.D)
        return (means + eps * noise) / math.sqrt(1 + eps**2)

    def _distinct_label_classes(self, first: Int[torch.Tensor, " b"], n: int,
                                g: torch.Generator) -> Int[torch.Tensor, "b n"]:
        """``first`` then ``n-1`` classes whose labels differ from each other's and ``first``'s."""
        b = first.shape[0]
        out = torch.empty(b, n, dtype=torch.long)
        out[:, 0] = first
        used = torch.zeros(b, self.config.L, dtype=torch.bool)
        used[torch.arange(b), self.class_label[first]] = True
        for j in range(1, n):
            probs = self.class_probs.expand(b, -1) * ~used[:, self.class_label]
            cls = torch.multinomial(probs, 1, generator=g)[:, 0]
            out[:, j] = cls
            used[torch.arange(b), self.class_label[cls]] = True
        return out

    def _assemble(self, item_means, target_mean, context_labels, target, classes, g) -> ReddyBatch:
        c = self.config
        b = target.shape[0]
        items = self._items(item_means, g)  # [b, N, D]
        query = self._items(target_mean, g)  # [b, D]
        content = torch.zeros(b, c.seq_len, c.D)
        content[:, 0:2 * c.N:2] = items
        content[:, 1:2 * c.N:2] = self.label_vectors[context_labels]
        content[:, -1] = query
        start = torch.randint(0, c.P - c.seq_len + 1, (b,), generator=g)
        pos = start[:, None] + torch.arange(c.seq_len)
        inputs = torch.cat([torch.nn.functional.one_hot(pos, c.P).float(), content], dim=-1)
        return ReddyBatch(inputs, target, context_labels, classes)

    def _grouped(self, groups: Int[torch.Tensor, "b m"], copies: int, g: torch.Generator):
        """Positions for ``m`` groups × ``copies``: each row a random permutation of the group ids."""
        b, m = groups.shape
        slots = torch.arange(m).repeat_interleave(copies).expand(b, -1)
        perm = torch.argsort(torch.rand(b, m * copies, generator=g), dim=1)
        return torch.gather(slots, 1, perm)  # [b, N]: which group sits at each item slot

    def _bursty(self, b: int, g: torch.Generator, *, copies: int, swap: bool = False) -> ReddyBatch:
        c = self.config
        m = c.N // copies
        target_cls = torch.multinomial(self.class_probs.expand(b, -1), 1, generator=g)[:, 0]
        groups = self._distinct_label_classes(target_cls, m, g)  # [b, m], group 0 the target's
        labels = self.class_label[groups]
        if swap:  # every group gets another group's label or an unused one, never its own
            labels = self._derange_labels(labels, g)
        slot = self._grouped(groups, copies, g)
        item_cls = torch.gather(groups, 1, slot)
        ctx_labels = torch.gather(labels, 1, slot)
        return self._assemble(self.class_means[item_cls], self.class_means[target_cls], ctx_labels,
                              labels[:, 0], torch.cat([item_cls, target_cls[:, None]], 1), g)

    def _derange_labels(self, labels: Int[torch.Tensor, "b m"], g: torch.Generator) -> Int[torch.Tensor, "b m"]:
        b, m = labels.shape
        L = self.config.L
        out = torch.empty_like(labels)
        for r in range(b):  # draw distinct labels until none equals its group's own
            while True:
                cand = torch.randperm(L, generator=g)[:m]
                if not (cand == labels[r]).any():
                    out[r] = cand
                    break
        return out

    def _novel(self, b: int, g: torch.Generator, *, copies: int) -> ReddyBatch:
        c = self.config
        m = c.N // copies
        means = torch.randn(b, m, c.D, generator=g) / math.sqrt(c.D)
        labels = torch.argsort(torch.rand(b, c.L, generator=g), dim=1)[:, :m]  # distinct labels
        slot = self._grouped(labels, copies, g)
        item_means = torch.gather(means, 1, slot[..., None].expand(-1, -1, c.D))
        ctx_labels = torch.gather(labels, 1, slot)
        classes = torch.full((b, c.N + 1), -1, dtype=torch.long)
        return self._assemble(item_means, means[:, 0], ctx_labels, labels[:, 0], classes, g)

    def _iid(self, b: int, g: torch.Generator, *, exclude_target: bool = False) -> ReddyBatch:
        c = self.config
        probs = self.class_probs.expand(b, -1)
        target_cls = torch.multinomial(probs, 1, generator=g)[:, 0]
        if exclude_target:
            probs = probs.clone()
            probs[torch.arange(b), target_cls] = 0
        item_cls = torch.multinomial(probs, c.N, replacement=True, generator=g)
        return self._assemble(self.class_means[item_cls], self.class_means[target_cls],
                              self.class_label[item_cls], self.class_label[target_cls],
                              torch.cat([item_cls, target_cls[:, None]], 1), g)

    @staticmethod
    def _cat(parts: list[ReddyBatch], order: Int[torch.Tensor, " b"]) -> ReddyBatch:
        def cat(name):
            return torch.cat([getattr(p, name) for p in parts])[order]
        return ReddyBatch(cat("inputs"), cat("target"), cat("context_labels"), cat("classes"))

    def sample(self, batch: int, generator: torch.Generator, step: int = 0) -> ReddyBatch:
        """A training batch drawn from ``generator`` (``step`` never changes the distribution)."""
        c = self.config
        u = torch.rand(batch, generator=generator)
        novel = u < c.p_novel
        bursty = ~novel & (u < c.p_novel + (1 - c.p_novel) * c.p_bursty) & (c.B > 0)
        iid = ~novel & ~bursty
        counts = [int(novel.sum()), int(bursty.sum()), int(iid.sum())]
        parts = []
        if counts[0]:
            parts.append(self._novel(counts[0], generator, copies=max(c.B, 1)))
        if counts[1]:
            parts.append(self._bursty(counts[1], generator, copies=c.B))
        if counts[2]:
            parts.append(self._iid(counts[2], generator))
        # put each part back where its draw was, so row i's kind is decided by u[i]
        where = torch.cat([torch.nonzero(m)[:, 0] for m, n in zip((novel, bursty, iid), counts) if n])
        return self._cat(parts, torch.argsort(where))

    def eval_set(self, which: str, n: int, seed: int) -> ReddyBatch:
        """``n`` held-out sequences of the ``iw``, ``ic`` or ``swapped`` set, drawn from ``seed``.

        Drawn from a generator of their own (never the training stream); the class means and
        labels are the run's, the novel classes of ``ic`` are drawn anew.
        """
        g = torch.Generator().manual_seed(int(seed) * 7919 + EVAL_SETS.index(which) + 1
                                          if which in EVAL_SETS else 0)
        copies = max(self.config.B, 1)
        if which == "iw":
            return self._iid(n, g, exclude_target=True)
        if which == "ic":
            return self._novel(n, g, copies=copies)
        if which == "swapped":
            return self._bursty(n, g, copies=copies, swap=True)
        raise ConfigError(f"unknown evaluation set '{which}'; choose one of: {', '.join(EVAL_SETS)}")

    def relabeled(self, batch: ReddyBatch, seed: int) -> ReddyBatch:
        """The same sequences with the context's labels permuted among its classes, none keeping its own.

        Items, positions and target are unchanged; each label token shows another of the context's
        labels (a random cyclic permutation of the distinct labels, per sequence), so the answer
        read from the context changes: ``target`` becomes the label now shown with the target's
        class (unchanged when the target's label is not in the context). The corrupted input of
        activation patching (``induction_toolkit.reddy.analysis``).
        """
        c = self.config
        g = torch.Generator().manual_seed(int(seed))
        labels = batch.context_labels.clone()
        target = batch.target.clone()
        for r in range(len(batch)):
            distinct = batch.context_labels[r].unique()
            if distinct.numel() < 2:
                raise ConfigError("relabelling needs at least two distinct labels in a context "
                                  f"(N/B = {c.N // max(c.B, 1)})")
            order = distinct[torch.randperm(distinct.numel(), generator=g)]
            to = dict(zip(order.tolist(), order.roll(-1).tolist()))  # a cycle: nobody keeps its own
            labels[r] = torch.tensor([to[int(x)] for x in batch.context_labels[r]])
            target[r] = to.get(int(batch.target[r]), int(batch.target[r]))
        inputs = batch.inputs.clone()
        inputs[:, 1:2 * c.N:2, c.P:] = self.label_vectors[labels]
        return ReddyBatch(inputs, target, labels, batch.classes.clone())

    def to_dict(self) -> dict[str, Any]:
        """The data parameters and the seed the world was drawn from."""
        return {**self.config.to_dict(), "seed": self.seed}
