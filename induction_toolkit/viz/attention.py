"""Attention patterns of chosen heads as an offline circuitsvis ``AttentionHeads`` view."""

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from transformer_lens import HookedTransformer

from ..errors import ConfigError
from ..scores import HeadScores, head_label, score_model, scoring_task
from ..tasks.repeated import repeated_tokens
from .circuits import CircuitsView

# Which score ranks the heads for each named selection.
HEAD_SELECTIONS = {"induction": "prefix_matching", "previous_token": "previous_token"}
# Patterns are shipped as JSON: four decimals are finer than any colour step circuitsvis draws.
_DECIMALS = 4


def select_heads(scores: HeadScores, heads: str | Sequence[tuple[int, int]], top: int = 3
                 ) -> list[tuple[int, int]]:
    """``"induction"``/``"previous_token"``: the ``top`` heads by that score; ``"all"``; or a list."""
    if isinstance(heads, str):
        if heads == "all":
            return [(l, h) for l in range(scores.n_layers) for h in range(scores.n_heads)]
        kinds = [k.strip() for k in heads.split("+")]
        chosen: list[tuple[int, int]] = []
        for kind in kinds:
            if kind not in HEAD_SELECTIONS:
                raise ConfigError(f"unknown head selection {kind!r}; use one of "
                                  f"{sorted(HEAD_SELECTIONS) + ['all']} or a list of (layer, head)")
            for layer, head, _ in scores.top_heads(HEAD_SELECTIONS[kind], k=top):
                if (layer, head) not in chosen:
                    chosen.append((layer, head))
        return chosen
    return [(int(l), int(h)) for l, h in heads]


def token_labels(model: HookedTransformer, tokens: Int[torch.Tensor, "pos"],
                 bos_token_id: int | None = None) -> list[str]:
    """Readable token strings: the tokenizer's when the model has one, else the token ids."""
    if getattr(model, "tokenizer", None) is not None:
        return list(model.to_str_tokens(tokens))
    return ["BOS" if bos_token_id is not None and int(t) == bos_token_id else str(int(t))
            for t in tokens]


@torch.no_grad()
def head_patterns(model: HookedTransformer, tokens: Int[torch.Tensor, "pos"],
                  heads: Sequence[tuple[int, int]]) -> Float[torch.Tensor, "head_index pos pos"]:
    """Attention patterns ``[len(heads), query, key]`` of the given heads on one sequence."""
    layers = sorted({l for l, _ in heads})
    names = {f"blocks.{l}.attn.hook_pattern" for l in layers}
    _, cache = model.run_with_cache(tokens[None].to(model.cfg.device), return_type=None,
                                    names_filter=lambda n: n in names)
    return torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0, h].float().cpu()
                        for l, h in heads])


def default_tokens(model: HookedTransformer, *, seq_len: int = 12, repeats: int = 2,
                   bos_token_id: int | None = None, exclude: tuple[int, ...] = (),
                   seed: int = 0) -> Int[torch.Tensor, "pos"]:
    """One repeated random-token sequence, short enough to read in a pattern plot."""
    task, _ = scoring_task(model, seq_len=seq_len, repeats=repeats, bos_token_id=bos_token_id,
                           exclude=exclude)
    return repeated_tokens(task, 1, seed=seed)[0]


def attention(model: HookedTransformer, tokens: Int[torch.Tensor, "pos"] | str | None = None, *,
              heads: str | Sequence[tuple[int, int]] = "induction", top: int = 3,
              scores: HeadScores | None = None, bos_token_id: int | None = None,
              seed: int = 0, title: str | None = None) -> CircuitsView:
    """circuitsvis attention patterns of the ``top`` heads of a kind (or of the listed heads).

    ``tokens``: a 1-d tensor of ids, a string (models with a tokenizer), or ``None`` for a short
    repeated random sequence, on which an induction head's stripe one off the repeat diagonal is
    easy to see. Head ranking uses ``scores`` if given, else a fresh :func:`score_model`.
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
        unknown = [k for k in heads.split("+") if k.strip() not in HEAD_SELECTIONS]
        if unknown:
            raise ConfigError(f"unknown head selection {unknown[0]!r}; use one of "
                              f"{sorted(HEAD_SELECTIONS) + ['all']} or a list of (layer, head)")
        if scores is None:
            scores = score_model(model, bos_token_id=bos_token_id, seed=seed, batch=16)
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
    patterns = head_patterns(model, tokens, chosen)
    # Short names: circuitsvis prints them on small tiles; the scores go in the caption.
    names = [head_label(l, h) for l, h in chosen]
    caption = None
    if scores is not None:
        caption = "; ".join(f"{head_label(l, h)}: prefix-matching "
                            f"{float(scores.prefix_matching[l, h]):.2f}, previous-token "
                            f"{float(scores.previous_token[l, h]):.2f}" for l, h in chosen)
    props: dict[str, Any] = {
        "attention": patterns.double().round(decimals=_DECIMALS).tolist(),
        "tokens": token_labels(model, tokens, bos_token_id),
        "attentionHeadNames": names,
        "maskUpperTri": True,
    }
    return CircuitsView("AttentionHeads", props, title=title, caption=caption,
                        info={"heads": [head_label(l, h) for l, h in chosen],
                              "n_tokens": int(tokens.shape[0])})

