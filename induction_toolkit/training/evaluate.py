"""One evaluation of a model during training: losses, ICL score, per-head scores.

Evaluation is off the hot path, in eval mode, on fixed batches that never touch the training RNG
streams (so evaluating cannot change the run). Three fixed batches, each from its own seed:

- the task's **eval batch** (``task.eval_batch``: a first half and a repeated half) gives the
  losses; the **in-context loss** ``loss_repeated_half`` is the mean loss on the targets from the
  *second* token of the second copy on (the first token of a copy follows a token never seen
  before it, so no induction head can predict it: ``docs/training.md``);
- **held-out samples of the training distribution** (``tasks.base.heldout_sample``, drawn with the
  task's own ``sample``) give the **ICL score**: mean loss over a late window of token positions
  minus mean loss over an early window (:func:`icl_windows`). Never the scoring sequences: on
  repeated random tokens the ICL score *is* the induction loss, so a phase change located with it
  would coincide with induction by construction;
- repeated random tokens (``scores.scoring_task``) give the per-head scores;
- the **bigram reference** (``bigram.BigramReference``, vocabularies up to ``bigram.MAX_VOCAB``):
  a bigram predictor fitted on training-distribution batches of its own seed, scored on the
  held-out samples above; each row adds its loss and the model's KL distance to it.
"""

import math
from typing import Any

import torch
from jaxtyping import Float
from transformer_lens import HookedTransformer

from ..bigram import MAX_VOCAB, BigramReference
from ..fast_forward import can_fuse, fused_logits
from ..scores import (icl_windows, per_token_loss, score_model, scoring_task,
                      windowed_icl_score)
from ..tasks.base import TrainingTask, heldout_sample

EVAL_SEED = 1234
SCORE_SEED = 4321
# Held-out samples for the ICL score: a seed no other batch of the toolkit uses, and far from the
# small seeds runs are trained with.
ICL_SEED = 2**40 + 7
# Training-distribution batches the bigram reference is fitted on (drawn like training batches):
# 2M tokens, so its held-out loss is within ~0.005 nats of the converged table's on the copying task
# (whose repeated copies make counts clumpy; 64 batches overfit by 0.06 nats).
BIGRAM_SEED = 2**40 + 11
BIGRAM_FIT_TOKENS, BIGRAM_FIT_BATCH = 1 << 21, 32
def in_context_loss(loss: Float[torch.Tensor, "batch pos_minus_1"], split: int) -> float:
    """Mean loss (nats) on the repeated half's targets from token ``split + 1`` on.

    ``split`` is the index of the second copy's first token, which no induction head can predict
    (its preceding token has not occurred before), so it is excluded: column ``i`` of ``loss`` is
    the loss on token ``i + 1``, and the first kept column is ``split``.
    """
    return float(loss[:, split:].mean())


class Evaluator:
    """Evaluates a model on the fixed batches of a task; calling it returns one metrics row."""

    def __init__(self, model: HookedTransformer, task: TrainingTask, *, eval_batch: int,
                 score_batch: int):
        self.task = task
        self.tokens, self.split = task.eval_batch(eval_batch, EVAL_SEED)
        self.icl_tokens = heldout_sample(task, eval_batch, ICL_SEED)
        self.windows = icl_windows(self.icl_tokens.shape[1])
        self.score_task, _ = scoring_task(model, bos_token_id=task.bos_token_id,
                                          exclude=task.special_tokens)
        self.score_batch = score_batch
        self.bigram = None
        if task.d_vocab <= MAX_VOCAB:
            self.bigram = BigramReference(_bigram_fit(task), self.icl_tokens, task.d_vocab)

    @torch.no_grad()
    def __call__(self, model: HookedTransformer) -> dict[str, Any]:
        """One metrics row: losses (nats), ICL score (nats), per-head scores ``[layer][head]``."""
        was_training = model.training
        model.eval()
        try:
            loss = _per_token_loss(model, self.tokens)
            icl_logits = _logits(model, self.icl_tokens)
            icl_loss = per_token_loss(icl_logits, self.icl_tokens.to(icl_logits.device)).cpu()
            scores = score_model(model, task=self.score_task, batch=self.score_batch,
                                 seed=SCORE_SEED)
        finally:
            model.train(was_training)
        (e_lo, e_hi), (l_lo, l_hi) = self.windows
        return {
            "eval_loss": float(loss.mean()),
            "loss_first_half": float(loss[:, : self.split - 1].mean()),
            "loss_repeated_half": in_context_loss(loss, self.split),
            "icl_score": windowed_icl_score(icl_loss, self.windows),
            "icl_windows": {"early": [e_lo, e_hi], "late": [l_lo, l_hi]},
            "prefix_matching": _rounded(scores.prefix_matching),
            "previous_token": _rounded(scores.previous_token),
            "duplicate_token": _rounded(scores.duplicate_token),
            **(self.bigram.metrics(icl_logits) if self.bigram is not None else {}),
        }


def _logits(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    # the fused forward when it applies: the same logits within 1e-6 (tests/test_fast_forward.py)
    # at about half the cost of the hooked one, which matters at one evaluation per 10 steps
    tokens = tokens.to(model.cfg.device)
    return fused_logits(model, tokens) if can_fuse(model) else model(tokens, return_type="logits")


def _per_token_loss(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    tokens = tokens.to(model.cfg.device)
    return per_token_loss(_logits(model, tokens), tokens).cpu()


_FIT_CACHE: dict[str, torch.Tensor] = {}


def _bigram_fit(task: TrainingTask) -> torch.Tensor:
    # one sample per task settings per process: a sweep or a test suite builds many evaluators
    key = repr(sorted(task.to_dict().items()))
    if key not in _FIT_CACHE:
        g = torch.Generator().manual_seed(BIGRAM_SEED)
        n_batches = -(-BIGRAM_FIT_TOKENS // (BIGRAM_FIT_BATCH * task.seq_len))
        _FIT_CACHE[key] = torch.cat([task.sample(BIGRAM_FIT_BATCH, g) for _ in range(n_batches)])
    return _FIT_CACHE[key]


def _rounded(t: torch.Tensor) -> list[list[float]]:
    return [[round(float(x), 6) for x in row] for row in t]


def non_finite_field(row: dict[str, Any]) -> str | None:
    """The first field of a metrics row holding NaN or ±inf (nested lists too), else None."""

    def bad(v: Any) -> bool:
        if isinstance(v, float):
            return not math.isfinite(v)
        return isinstance(v, (list, tuple)) and any(bad(x) for x in v)

    return next((k for k, v in row.items() if bad(v)), None)
