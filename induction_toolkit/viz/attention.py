"""Attention patterns of chosen heads as an offline circuitsvis ``AttentionHeads`` view."""

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from transformer_lens import HookedTransformer

from ..errors import ConfigError
from ..patterns import (HEAD_SELECTIONS, AttentionPatterns, attention_patterns, check_selection,
                        default_tokens, head_patterns, select_heads, token_labels)
from ..scores import HeadScores, head_label
from .circuits import CircuitsView

# Patterns are shipped as JSON: four decimals are finer than any colour step circuitsvis draws.
_DECIMALS = 4

__all__ = ["HEAD_SELECTIONS", "attention", "attention_view", "default_tokens", "head_patterns",
           "select_heads", "token_labels"]


def attention_view(patterns: AttentionPatterns, *, scores: HeadScores | None = None,
                   title: str | None = None) -> CircuitsView:
    """circuitsvis ``AttentionHeads`` of computed patterns; ``scores`` add a caption per head."""
    caption = None
    if scores is not None:
        caption = "; ".join(f"{head_label(l, h)}: prefix-matching "
                            f"{float(scores.prefix_matching[l, h]):.2f}, previous-token "
                            f"{float(scores.previous_token[l, h]):.2f}" for l, h in patterns.heads)
    props: dict[str, Any] = {
        "attention": patterns.patterns.double().round(decimals=_DECIMALS).tolist(),
        "tokens": list(patterns.tokens),
        # Short names: circuitsvis prints them on small tiles; the scores go in the caption.
        "attentionHeadNames": patterns.labels,
        "maskUpperTri": True,
    }
    return CircuitsView("AttentionHeads", props, title=title or patterns.title, caption=caption,
                        info={"heads": patterns.labels, "n_tokens": len(patterns.tokens)})


def attention(model: HookedTransformer, tokens: Int[torch.Tensor, " pos"] | str | None = None, *,
              heads: str | Sequence[tuple[int, int]] = "induction", top: int = 3,
              scores: HeadScores | None = None, bos_token_id: int | None = None,
              seed: int = 0, title: str | None = None) -> CircuitsView:
    """circuitsvis attention patterns of the ``top`` heads of a kind (or of the listed heads).

    ``tokens``: a 1-d tensor of ids, a string (models with a tokenizer), or ``None`` for a short
    repeated random sequence, on which an induction head's stripe one off the repeat diagonal is
    easy to see. A named selection ranks heads by ``scores`` (a ``HeadScores``, required then).
    """
    if isinstance(tokens, str):
        if getattr(model, "tokenizer", None) is None:
            raise ConfigError("this model has no tokenizer: pass token ids, not a string")
        tokens = model.to_tokens(tokens)[0]
    elif tokens is None:
        tokens = default_tokens(model, bos_token_id=bos_token_id, seed=seed)
    tokens = torch.as_tensor(tokens)
    if tokens.ndim == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.ndim != 1:
        raise ConfigError(f"pass one sequence of tokens (1-d), got shape {tuple(tokens.shape)}")
    if tokens.shape[0] > model.cfg.n_ctx:
        raise ConfigError(f"{tokens.shape[0]} tokens exceed the model's context ({model.cfg.n_ctx})")
    if isinstance(heads, str) and heads != "all":
        check_selection(heads)
        if scores is None:
            raise ConfigError(f"heads={heads!r} ranks heads by their scores: pass "
                              "scores=score_model(model) (induction_toolkit.scores), or a list of "
                              "(layer, head)")
        chosen = select_heads(scores, heads, top)
    elif isinstance(heads, str):
        chosen = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    else:
        chosen = [(int(l), int(h)) for l, h in heads]
    for l, h in chosen:
        if not (0 <= l < model.cfg.n_layers and 0 <= h < model.cfg.n_heads):
            raise ConfigError(f"no head {head_label(l, h)} in a model with {model.cfg.n_layers} "
                              f"layers × {model.cfg.n_heads} heads")
    if not chosen:
        raise ConfigError("no heads selected")
    patterns = attention_patterns(model, tokens, chosen, bos_token_id=bos_token_id)
    return attention_view(patterns, scores=scores, title=title)
