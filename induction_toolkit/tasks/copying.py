"""The blog's copying task: ``a b c | a b c`` — random content, a separator, the content again.

Sequences are ``[BOS] a₁…a_L SEP a₁…a_L SEP a₁…`` truncated to ``seq_len`` (64 in the blog), so
after the first copy every token is predictable by induction. ``L`` is drawn per batch from
``[min_length, max_length]``: with one fixed ``L`` the second half is solvable by position alone
(attend ``L + 1`` tokens back) and no induction head is needed.
"""

import dataclasses
from dataclasses import dataclass

import torch
from jaxtyping import Int

from ..errors import ConfigError


@dataclass(frozen=True)
class CopyingConfig:
    """The copying task's settings: content of random length, a separator, the content again."""

    d_vocab: int = 64
    seq_len: int = 64
    min_length: int = 4
    max_length: int = 31
    separator_token_id: int = 1
    bos_token_id: int | None = 0
    name: str = "copying"

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length:
            raise ConfigError(f"need 1 ≤ min_length ≤ max_length, got {self.min_length}, "
                              f"{self.max_length}")
        if self.prefix_len + 2 * self.max_length + 1 > self.seq_len:
            raise ConfigError(f"a copy of length {self.max_length} does not fit twice in "
                              f"{self.seq_len} tokens")
        if self.separator_token_id == self.bos_token_id:
            raise ConfigError("the separator and BOS tokens must differ")
        if len(self.content_tokens()) < 2:
            raise ConfigError("the vocabulary leaves fewer than 2 content tokens")

    @property
    def prefix_len(self) -> int:
        """Positions before the first copy (1 with BOS, else 0)."""
        return int(self.bos_token_id is not None)

    @property
    def special_tokens(self) -> tuple[int, ...]:
        """The BOS and separator token ids (never drawn as content)."""
        return tuple(t for t in (self.bos_token_id, self.separator_token_id) if t is not None)

    def content_tokens(self) -> torch.Tensor:
        """The token ids content is drawn from (the vocabulary minus special tokens), 1-D long."""
        special = set(self.special_tokens)
        return torch.tensor([t for t in range(self.d_vocab) if t not in special])

    def _build(self, content: torch.Tensor) -> torch.Tensor:
        batch = content.shape[0]
        sep = torch.full((batch, 1), self.separator_token_id, dtype=torch.long)
        unit = torch.cat([content, sep], dim=1)
        body = unit.repeat(1, -(-self.seq_len // unit.shape[1]) + 1)
        if self.bos_token_id is not None:
            body = torch.cat([torch.full((batch, 1), self.bos_token_id, dtype=torch.long), body], 1)
        return body[:, : self.seq_len]

    def _content(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        allowed = self.content_tokens()
        return allowed[torch.randint(0, len(allowed), (batch, length), generator=generator)]

    def sample(self, batch: int, generator: torch.Generator,
               step: int = 0) -> Int[torch.Tensor, "batch pos"]:
        """A training batch ``[batch, seq_len]`` of one random copy length drawn per batch."""
        length = int(torch.randint(self.min_length, self.max_length + 1, (1,), generator=generator))
        return self._build(self._content(batch, length, generator))

    def eval_batch(self, batch: int, seed: int) -> tuple[Int[torch.Tensor, "batch pos"], int]:
        """The longest copy: ``[BOS] a SEP a …``; the second half starts after the separator."""
        g = torch.Generator().manual_seed(seed)
        tokens = self._build(self._content(batch, self.max_length, g))
        return tokens, self.prefix_len + self.max_length + 1

    def to_dict(self) -> dict:
        """The task's settings as a JSON-ready dict."""
        return dataclasses.asdict(self)
