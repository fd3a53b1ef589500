"""One evaluation of a model during training: losses, ICL score, per-head scores.

Evaluation is off the hot path: it runs every ``eval_every`` steps, in eval mode, on fixed
batches that never touch the training RNG streams (so evaluating cannot change the run).
"""

from typing import Any

import torch
from transformer_lens import HookedTransformer

from ..scores import icl_score, per_token_loss, score_model, scoring_task
from ..tasks.base import TrainingTask

EVAL_SEED = 1234
SCORE_SEED = 4321


class Evaluator:
    def __init__(self, model: HookedTransformer, task: TrainingTask, *, eval_batch: int,
                 score_batch: int):
        self.task = task
        self.tokens, self.split = task.eval_batch(eval_batch, EVAL_SEED)
        self.score_task, _ = scoring_task(model, bos_token_id=task.bos_token_id,
                                          exclude=task.special_tokens)
        self.score_batch = score_batch

    @torch.no_grad()
    def __call__(self, model: HookedTransformer) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        try:
            tokens = self.tokens.to(model.cfg.device)
            loss = per_token_loss(model(tokens, return_type="logits"), tokens).cpu()
            first = loss[:, : self.split - 1]
            second = loss[:, self.split - 1:]
            icl, _, _ = icl_score(loss)
            scores = score_model(model, task=self.score_task, batch=self.score_batch,
                                 seed=SCORE_SEED)
        finally:
            model.train(was_training)
        return {
            "eval_loss": float(loss.mean()),
            "loss_first_half": float(first.mean()),
            "loss_repeated_half": float(second.mean()),
            "icl_score": icl,
            "score_icl": scores.icl_score,
            "prefix_matching": _rounded(scores.prefix_matching),
            "previous_token": _rounded(scores.previous_token),
        }


def _rounded(t: torch.Tensor) -> list[list[float]]:
    return [[round(float(x), 6) for x in row] for row in t]
