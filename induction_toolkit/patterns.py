"""Attention patterns of chosen heads on one sequence: the data behind ``viz.attention``.

Reading patterns takes one forward pass (``run_with_cache`` on ``hook_pattern``); this module
does it, so the views in :mod:`induction_toolkit.viz` only draw what they are given.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from transformer_lens import HookedTransformer

from .errors import ConfigError
from .scores import HeadScores, head_label, scoring_task
from .tasks.repeated import repeated_tokens

# Which score ranks the heads for each named selection.
HEAD_SELECTIONS = {"induction": "prefix_matching", "previous_token": "previous_token"}


@dataclass
class AttentionPatterns:
    """Attention of ``heads`` on one sequence: ``patterns[i]`` is head ``heads[i]``'s [query, key]."""

    heads: list[tuple[int, int]]
    tokens: list[str]  # one readable label per position
    patterns: Float[torch.Tensor, "head_index query_pos key_pos"]
    title: str | None = None

    @property
    def labels(self) -> list[str]:
        """``L{layer}H{head}`` of each head, in order."""
        return [head_label(l, h) for l, h in self.heads]


def select_heads(scores: HeadScores, heads: str | Sequence[tuple[int, int]], top: int = 3
                 ) -> list[tuple[int, int]]:
    """``"induction"``/``"previous_token"`` (or both, joined by ``+``): the ``top`` heads by that
    score; ``"all"``; or the given ``(layer, head)`` list."""
    if isinstance(heads, str):
        if heads == "all":
            return [(l, h) for l in range(scores.n_layers) for h in range(scores.n_heads)]
        check_selection(heads)
        chosen: list[tuple[int, int]] = []
        for kind in (k.strip() for k in heads.split("+")):
            for layer, head, _ in scores.top_heads(HEAD_SELECTIONS[kind], k=top):
                if (layer, head) not in chosen:
                    chosen.append((layer, head))
        return chosen
    return [(int(l), int(h)) for l, h in heads]


def check_selection(heads: str) -> None:
    """Raise ``ConfigError`` unless ``heads`` names known selections (``induction+previous_token``)."""
    if heads == "all":
        return
    unknown = [k for k in heads.split("+") if k.strip() not in HEAD_SELECTIONS]
    if unknown:
        raise ConfigError(f"unknown head selection {unknown[0]!r}; use one of "
                          f"{sorted(HEAD_SELECTIONS) + ['all']} or a list of (layer, head)")


def token_labels(model: HookedTransformer, tokens: Int[torch.Tensor, " pos"],
                 bos_token_id: int | None = None) -> list[str]:
    """Readable token strings: the tokenizer's when the model has one, else the token ids."""
    if getattr(model, "tokenizer", None) is not None:
        return list(model.to_str_tokens(tokens))
    return ["BOS" if bos_token_id is not None and int(t) == bos_token_id else str(int(t))
            for t in tokens]


@torch.no_grad()
def head_patterns(model: HookedTransformer, tokens: Int[torch.Tensor, " pos"],
                  heads: Sequence[tuple[int, int]]) -> Float[torch.Tensor, "head_index pos pos"]:
    """Attention probabilities ``[len(heads), query, key]`` of the given heads on one sequence."""
    layers = sorted({l for l, _ in heads})
    names = {f"blocks.{l}.attn.hook_pattern" for l in layers}
    _, cache = model.run_with_cache(tokens[None].to(model.cfg.device), return_type=None,
                                    names_filter=lambda n: n in names)
    return torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0, h].float().cpu()
                        for l, h in heads])


def default_tokens(model: HookedTransformer, *, seq_len: int = 12, repeats: int = 2,
                   bos_token_id: int | None = None, exclude: tuple[int, ...] = (),
                   seed: int = 0) -> Int[torch.Tensor, " pos"]:
    """One repeated random-token sequence (token ids), short enough to read in a pattern plot."""
    task, _ = scoring_task(model, seq_len=seq_len, repeats=repeats, bos_token_id=bos_token_id,
                           exclude=exclude)
    return repeated_tokens(task, 1, seed=seed)[0]


def attention_patterns(model: HookedTransformer, tokens: Int[torch.Tensor, " pos"],
                       heads: Sequence[tuple[int, int]], *, bos_token_id: int | None = None,
                       title: str | None = None) -> AttentionPatterns:
    """The patterns of ``heads`` on ``tokens``, with readable token labels."""
    heads = [(int(l), int(h)) for l, h in heads]
    return AttentionPatterns(heads, token_labels(model, tokens, bos_token_id),
                             head_patterns(model, tokens, heads), title)
