"""Repeated random tokens: ``R`` random tokens repeated ``k`` times, optionally after a BOS token.

The induction benchmark of Olsson et al. 2022 (25 tokens repeated 4×). Within one segment tokens
are drawn without replacement whenever the vocabulary allows it, so "the token after the earlier
occurrence" is unambiguous and the offset and token definitions of prefix matching coincide.
"""

import dataclasses
from dataclasses import dataclass

import torch
from jaxtyping import Int

from ..errors import ConfigError


@dataclass(frozen=True)
class RepeatedTokensConfig:
    d_vocab: int  # token ids are drawn from [0, d_vocab)
    seq_len: int = 25  # R: length of one random segment
    repeats: int = 2  # k: how many times the segment appears
    bos_token_id: int | None = None  # prepended when set; never drawn as a content token
    exclude: tuple[int, ...] = ()  # ids never drawn (special tokens, most/least frequent)

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ConfigError(f"seq_len must be ≥ 1, got {self.seq_len}")
        if self.repeats < 2:
            raise ConfigError(f"repeats must be ≥ 2 to measure induction, got {self.repeats}")
        if len(self.allowed_tokens()) < 2:
            raise ConfigError("the vocabulary leaves fewer than 2 tokens to draw from")

    @property
    def total_len(self) -> int:
        return self.seq_len * self.repeats + (self.bos_token_id is not None)

    @property
    def prefix_len(self) -> int:
        """Positions before the first segment (1 with BOS, else 0)."""
        return int(self.bos_token_id is not None)

    def allowed_tokens(self) -> torch.Tensor:
        banned = set(self.exclude)
        if self.bos_token_id is not None:
            banned.add(self.bos_token_id)
        return torch.tensor([t for t in range(self.d_vocab) if t not in banned], dtype=torch.long)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["exclude"] = list(self.exclude)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "RepeatedTokensConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "exclude" in kwargs:
            kwargs["exclude"] = tuple(kwargs["exclude"])
        return cls(**kwargs)


def repeated_tokens(cfg: RepeatedTokensConfig, batch: int, *, seed: int | None = None,
                    generator: torch.Generator | None = None) -> Int[torch.Tensor, "batch pos"]:
    """A batch of repeated random-token sequences, shape ``[batch, total_len]``.

    Pass ``seed`` for a one-off reproducible batch or ``generator`` to draw a stream of batches.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    allowed = cfg.allowed_tokens()
    n = len(allowed)
    if cfg.seq_len <= n:
        # argsort of uniform noise = a random permutation per row, batched
        idx = torch.rand(batch, n, generator=generator).argsort(dim=-1)[:, : cfg.seq_len]
    else:
        idx = torch.randint(0, n, (batch, cfg.seq_len), generator=generator)
    segment = allowed[idx]
    tokens = segment.repeat(1, cfg.repeats)
    if cfg.bos_token_id is not None:
        bos = torch.full((batch, 1), cfg.bos_token_id, dtype=torch.long)
        tokens = torch.cat([bos, tokens], dim=1)
    return tokens
