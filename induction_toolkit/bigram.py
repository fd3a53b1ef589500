"""The bigram reference: the best next-token predictor that sees only the current token.

The blog (``seeds/000_blog_emergence_small_transformers.txt``) reads the loss curve as three
regimes, "random, bigram, and inductive", and asks whether a smaller circuit precedes the
induction head. Two numbers make the middle regime measurable (``docs/blog-questions.md``):

- **bigram loss**: the cross-entropy (nats) on held-out sequences of the bigram predictor
  ``p(next = b | current = a) = (n_ab + α) / (n_a + α·V)`` whose counts ``n`` are fitted on
  sequences of the *training* distribution (never on the held-out sequences it is scored on).
  ``α = 0.5`` (the Krichevsky–Trofimov pseudo-count) keeps unseen pairs finite; ``α = 0`` is the
  maximum-likelihood table. The **unigram loss** (the same with the current token ignored) is the
  floor of the "random" regime;
- **distance to the bigram predictor**: ``KL(p_bigram ‖ p_model)`` per position, averaged over the
  held-out positions (nats, ≥ 0; 0 when the model *is* the bigram predictor). ``_first`` averages
  only over positions whose current token occurs there for the first time in the sequence, where
  no in-context mechanism can help and the bigram predictor is as good as it gets from one token.

Chance levels: a model predicting uniformly has loss ``ln V``; on sequences of independent
uniform tokens the bigram and unigram losses are both ``ln V``.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from .errors import ConfigError

# Krichevsky–Trofimov pseudo-count: finite loss for pairs never seen in the fitting sample.
DEFAULT_ALPHA = 0.5
# Above this vocabulary the V×V table is not kept (a GPT-2 vocabulary would need 10 GB).
MAX_VOCAB = 1024


@dataclass
class BigramPredictor:
    """Bigram and unigram counts over a vocabulary of ``d_vocab`` tokens, with pseudo-count ``alpha``."""

    counts: Float[torch.Tensor, "vocab vocab"]  # counts[a, b]: times b followed a
    unigram_counts: Float[torch.Tensor, " vocab"]  # times each token was a target
    alpha: float = DEFAULT_ALPHA

    @property
    def d_vocab(self) -> int:
        """Number of tokens in the vocabulary."""
        return self.counts.shape[0]

    @classmethod
    def fit(cls, tokens: Int[torch.Tensor, "batch pos"], d_vocab: int,
            alpha: float = DEFAULT_ALPHA) -> "BigramPredictor":
        """Count every (token, next token) pair within each row of ``tokens`` (no pair crosses rows)."""
        if alpha < 0:
            raise ConfigError(f"alpha must be ≥ 0, got {alpha}")
        if d_vocab > MAX_VOCAB:
            raise ConfigError(f"a bigram table over {d_vocab} tokens is too big (at most {MAX_VOCAB})")
        tokens = tokens.long().cpu()
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= d_vocab):
            raise ConfigError(f"token ids outside the vocabulary [0, {d_vocab})")
        cur, nxt = tokens[:, :-1].reshape(-1), tokens[:, 1:].reshape(-1)
        counts = torch.bincount(cur * d_vocab + nxt, minlength=d_vocab * d_vocab)
        return cls(counts=counts.reshape(d_vocab, d_vocab).double(),
                   unigram_counts=torch.bincount(nxt, minlength=d_vocab).double(), alpha=alpha)

    def log_probs(self) -> Float[torch.Tensor, "vocab vocab"]:
        """``log p(next = b | current = a)`` as ``[a, b]``; a context never seen gives the unigram."""
        seen = self.counts.sum(-1, keepdim=True) > 0
        table = torch.where(seen, self.counts, self.unigram_counts[None, :]) + self.alpha
        return (table / table.sum(-1, keepdim=True)).log()

    def unigram_log_probs(self) -> Float[torch.Tensor, " vocab"]:
        """``log p(next = b)`` ignoring the current token (same pseudo-count)."""
        table = self.unigram_counts + self.alpha
        return (table / table.sum()).log()

    def loss(self, tokens: Int[torch.Tensor, "batch pos"]) -> float:
        """Mean cross-entropy (nats) of the bigram predictor on every next token of ``tokens``."""
        tokens = tokens.long().cpu()
        return float(-self.log_probs()[tokens[:, :-1], tokens[:, 1:]].mean())

    def unigram_loss(self, tokens: Int[torch.Tensor, "batch pos"]) -> float:
        """Mean cross-entropy (nats) of the unigram predictor on every next token of ``tokens``."""
        return float(-self.unigram_log_probs()[tokens.long().cpu()[:, 1:]].mean())

    def kl_from(self, logits: Float[torch.Tensor, "batch pos vocab"],
                tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos_minus_1"]:
        """``KL(p_bigram(·| t[i]) ‖ p_model(·| t[≤ i]))`` (nats) for every position but the last."""
        if logits.shape[-1] != self.d_vocab:
            raise ConfigError(f"the model has {logits.shape[-1]} output tokens, the bigram table "
                              f"{self.d_vocab}")
        ref = self.log_probs()[tokens.long().cpu()[:, :-1]]  # [batch, pos-1, vocab]
        model = logits[:, :-1].double().cpu().log_softmax(-1)
        return (ref.exp() * (ref - model)).sum(-1)


def first_occurrence(tokens: Int[torch.Tensor, "batch pos"]) -> torch.Tensor:
    """``mask[b, i]``: ``tokens[b, i]`` does not occur at any earlier position of its row."""
    n = tokens.shape[1]
    earlier = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril(-1)
    return ~((tokens[:, :, None] == tokens[:, None, :]) & earlier).any(-1)


def conditional_entropy(joint: Float[torch.Tensor, "vocab vocab"]) -> float:
    """``H(next | current)`` (nats) of a joint distribution ``joint[a, b] = P(current=a, next=b)``."""
    joint = joint.double() / joint.sum()
    marginal = joint.sum(-1, keepdim=True)
    ok = joint > 0
    return float(-(joint[ok] * (joint / marginal.clamp_min(1e-300))[ok].log()).sum())


class BigramReference:
    """A bigram predictor fitted on training-distribution sequences, scored against held-out ones.

    ``metrics(logits)`` gives, for the model's logits on the held-out ``tokens``: ``bigram_loss``
    and ``unigram_loss`` (constant over a run), ``heldout_loss`` (the model's loss on the same
    tokens) and ``kl_to_bigram`` / ``kl_to_bigram_first`` (see the module docstring). Keys are
    ``None`` where there is nothing to average (no first occurrences).
    """

    def __init__(self, fit_tokens: Int[torch.Tensor, "fit_batch fit_pos"],
                 heldout_tokens: Int[torch.Tensor, "batch pos"], d_vocab: int,
                 alpha: float = DEFAULT_ALPHA):
        self.predictor = BigramPredictor.fit(fit_tokens, d_vocab, alpha)
        self.tokens = heldout_tokens.long().cpu()
        self.first = first_occurrence(self.tokens)[:, :-1]
        self.bigram_loss = self.predictor.loss(self.tokens)
        self.unigram_loss = self.predictor.unigram_loss(self.tokens)
        self.n_fit_tokens = int(fit_tokens.numel())

    def metrics(self, logits: Float[torch.Tensor, "batch pos vocab"]) -> dict[str, Any]:
        """The bigram keys of one evaluation (nats) from the model's logits on the held-out tokens."""
        kl = self.predictor.kl_from(logits, self.tokens)
        model = logits[:, :-1].double().cpu().log_softmax(-1)
        loss = -model.gather(-1, self.tokens[:, 1:, None]).squeeze(-1)
        first = float(kl[self.first].mean()) if bool(self.first.any()) else None
        return {"bigram_loss": round(self.bigram_loss, 6), "unigram_loss": round(self.unigram_loss, 6),
                "heldout_loss": round(float(loss.mean()), 6),
                "kl_to_bigram": round(float(kl.mean()), 6),
                "kl_to_bigram_first": None if first is None or not math.isfinite(first)
                else round(first, 6)}
