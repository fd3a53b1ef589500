"""Reddy (2023)'s accuracies and progress measures, measured on held-out sequences.

On a batch from :meth:`ReddyTask.eval_set` (never the training batch):

- **accuracy**: fraction of targets whose arg-max label is right; chance ``1/L``.
- **ILA1** (item–label association, layer 1): attention from each token ``i ≥ 1`` to token
  ``i − 1``, averaged over those tokens; uniform attention gives ``mean_i 1/(i+1)`` (0.21 at N=8),
  a previous-token head 1.
- **TILA2** (target–item–label association, layer 2): attention from the target to the label
  token(s) that follow an item of its class (the correct label, ``B`` copies); uniform
  ``B/(2N+1)``, an induction head 1.
- **CLA** (context-label accuracy): the predicted probability mass on labels present in the
  context; uniform ``(distinct labels in context)/L``, picking a context label 1.
- **TLA2** (target–labels association): total attention from the target to the ``N`` label
  tokens; uniform ``N/(2N+1)``, 1 when the target reads only labels.

All four lie in ``[0, 1]``. ``chance_levels`` gives the uniform-attention / uniform-prediction
values for a task so plots and tables can show them.
"""

from typing import Any

import torch

from ..tasks.reddy import ReddyBatch, ReddyConfig

MEASURES = ("ILA1", "TILA2", "CLA", "TLA2")


@torch.no_grad()
def evaluate(model, batch: ReddyBatch, *, measures: bool = True) -> dict[str, float]:
    """Accuracy and loss on ``batch``; with ``measures`` also ILA1, TILA2, CLA and TLA2."""
    names = ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern")
    logits, cache = model.run_with_cache(batch.inputs, names_filter=lambda n: n in names)
    out = {"accuracy": (logits.argmax(-1) == batch.target).float().mean().item(),
           "loss": torch.nn.functional.cross_entropy(logits, batch.target).item()}
    if not measures:
        return out
    p1 = cache[names[0]][:, 0]  # [batch, q, k]
    p2 = cache[names[1]][:, 0, -1]  # the target's row, [batch, k]
    seq = p1.shape[-1]
    idx = torch.arange(1, seq)
    out["ILA1"] = p1[:, idx, idx - 1].mean().item()
    label_attn = p2[:, 1:seq - 1:2]  # label tokens sit at odd positions
    out["TILA2"] = (label_attn * batch.correct_label_mask).sum(-1).mean().item()
    out["TLA2"] = label_attn.sum(-1).mean().item()
    probs = logits.softmax(-1)
    present = torch.zeros_like(probs, dtype=torch.bool)
    present.scatter_(1, batch.context_labels, True)
    out["CLA"] = (probs * present).sum(-1).mean().item()
    return out


def chance_levels(config: ReddyConfig) -> dict[str, Any]:
    """Each measure's value under uniform attention and uniform prediction (on the ``ic`` set)."""
    n, copies = config.N, max(config.B, 1)
    seq = 2 * n + 1
    return {"accuracy": 1 / config.L,
            "context_guess_accuracy": copies / n,  # picking a context label at random
            "ILA1": sum(1 / (i + 1) for i in range(1, seq)) / (seq - 1),
            "TILA2": copies / seq, "TLA2": n / seq, "CLA": (n // copies) / config.L}


@torch.no_grad()
def head_scores(model, batch: ReddyBatch) -> dict[str, Any]:
    """Per head (one per layer): the task's own previous-token and induction scores.

    The inputs are continuous vectors, so the token-id scoring sequences of ``induct score`` do not
    apply; the task says where each head should look instead. ``previous_token``: attention from
    each token to its predecessor (ILA1 for layer 0), uniform ``mean 1/(i+1)``. ``induction``:
    attention from the target to the label after its class's item(s) (TILA2 for layer 1), uniform
    ``B/(2N+1)``. Both in ``[0, 1]``. ``previous_token_head`` / ``induction_head`` name the argmax
    heads as ``L{layer}H0``.
    """
    n_layers = len(model.blocks)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    _, cache = model.run_with_cache(batch.inputs, names_filter=lambda n: n in names)
    rows = []
    for layer, name in enumerate(names):
        p = cache[name][:, 0]
        seq = batch.inputs.shape[1]
        idx = torch.arange(1, seq)
        prev = p[:, idx, idx - 1].mean().item() if p.shape[-2] == seq else None
        label_attn = p[:, -1, 1:seq - 1:2]
        ind = (label_attn * batch.correct_label_mask).sum(-1).mean().item()
        rows.append({"head": f"L{layer}H0", "layer": layer, "previous_token": prev, "induction": ind})
    prev_rows = [r for r in rows if r["previous_token"] is not None]
    return {"heads": rows,
            "previous_token_head": max(prev_rows, key=lambda r: r["previous_token"])["head"],
            "induction_head": max(rows, key=lambda r: r["induction"])["head"]}
