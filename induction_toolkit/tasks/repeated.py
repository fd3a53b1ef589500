"""Repeated random tokens: ``R`` random tokens repeated ``k`` times, optionally after a BOS token.

The induction benchmark of Olsson et al. 2022 (25 tokens repeated 4×). Within one segment tokens
are drawn without replacement whenever the vocabulary allows it, so "the token after the earlier
occurrence" is unambiguous and the offset and token definitions of prefix matching coincide.

With ``min_seq_len`` set, each sequence draws its own segment length ``R_b`` uniformly in
``[min_seq_len, seq_len]`` and is padded to the common length with fresh random tokens placed
*before* its first copy (after BOS): with one fixed ``R`` a head attending by position to
``i − R + 1`` scores as an induction head without reading a single token.
"""

import dataclasses
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int

from ..errors import ConfigError


@dataclass(frozen=True)
class RepeatedTokensConfig:
    """Settings of a repeated-random-tokens batch: segment length, repeats, BOS, excluded ids."""

    d_vocab: int  # token ids are drawn from [0, d_vocab)
    seq_len: int = 25  # R: length of one random segment
    repeats: int = 2  # k: how many times the segment appears
    bos_token_id: int | None = None  # prepended when set; never drawn as a content token
    exclude: tuple[int, ...] = ()  # ids never drawn (special tokens, most/least frequent)
    # when set, R varies per sequence, uniformly in [min_seq_len, seq_len], padded in front
    min_seq_len: int | None = None

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ConfigError(f"seq_len must be ≥ 1, got {self.seq_len}")
        if self.min_seq_len is not None and not 1 <= self.min_seq_len <= self.seq_len:
            raise ConfigError(f"min_seq_len must be in [1, seq_len={self.seq_len}], "
                              f"got {self.min_seq_len}")
        if self.repeats < 2:
            raise ConfigError(f"repeats must be ≥ 2 to measure induction, got {self.repeats}")
        if len(self.allowed_tokens()) < 2:
            raise ConfigError("the vocabulary leaves fewer than 2 tokens to draw from")

    @property
    def total_len(self) -> int:
        """Tokens per sequence: ``seq_len × repeats``, plus one with BOS."""
        return self.seq_len * self.repeats + (self.bos_token_id is not None)

    @property
    def prefix_len(self) -> int:
        """Positions before the first segment (1 with BOS, else 0)."""
        return int(self.bos_token_id is not None)

    def allowed_tokens(self) -> torch.Tensor:
        """The token ids segments are drawn from (vocabulary minus BOS and ``exclude``), 1-D long."""
        banned = set(self.exclude)
        if self.bos_token_id is not None:
            banned.add(self.bos_token_id)
        return torch.tensor([t for t in range(self.d_vocab) if t not in banned], dtype=torch.long)

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict (``exclude`` as a list)."""
        d = dataclasses.asdict(self)
        d["exclude"] = list(self.exclude)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "RepeatedTokensConfig":
        """The config ``to_dict`` wrote (unknown keys ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "exclude" in kwargs:
            kwargs["exclude"] = tuple(kwargs["exclude"])
        return cls(**kwargs)


def repeated_tokens(cfg: RepeatedTokensConfig, batch: int, *, seed: int | None = None,
                    generator: torch.Generator | None = None) -> Int[torch.Tensor, "batch pos"]:
    """A batch of repeated random-token sequences, shape ``[batch, total_len]``.

    Pass ``seed`` for a one-off reproducible batch or ``generator`` to draw a stream of batches.
    With ``cfg.min_seq_len`` set the segment length varies per sequence; use
    :func:`repeated_tokens_with_lengths` to know each one.
    """
    return repeated_tokens_with_lengths(cfg, batch, seed=seed, generator=generator)[0]


def repeated_tokens_with_lengths(
        cfg: RepeatedTokensConfig, batch: int, *, seed: int | None = None,
        generator: torch.Generator | None = None,
) -> tuple[Int[torch.Tensor, "batch pos"], Int[torch.Tensor, " batch"]]:
    """``(tokens, segment_lengths)``: the batch of :func:`repeated_tokens` and each sequence's ``R``."""
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
    if cfg.min_seq_len is None:
        tokens = segment.repeat(1, cfg.repeats)
        lengths = torch.full((batch,), cfg.seq_len, dtype=torch.long)
    else:
        lengths = torch.randint(cfg.min_seq_len, cfg.seq_len + 1, (batch,), generator=generator)
        body = cfg.seq_len * cfg.repeats
        pad = (cfg.seq_len - lengths) * cfg.repeats  # [batch]: fresh tokens before the first copy
        noise = allowed[torch.randint(0, n, (batch, body), generator=generator)]
        pos = torch.arange(body)[None, :]
        # a prefix of each row's permutation is itself a segment of distinct tokens
        periodic = segment.gather(1, (pos - pad[:, None]).clamp_min(0) % lengths[:, None])
        tokens = torch.where(pos >= pad[:, None], periodic, noise)
    if cfg.bos_token_id is not None:
        bos = torch.full((batch, 1), cfg.bos_token_id, dtype=torch.long)
        tokens = torch.cat([bos, tokens], dim=1)
    return tokens, lengths


def repeated_query_mask(cfg: RepeatedTokensConfig,
                        lengths: Int[torch.Tensor, " batch"]) -> Bool[torch.Tensor, "batch pos"]:
    """``mask[b, i]``: position ``i`` of sequence ``b`` lies in its repeats 2..k."""
    lengths = lengths.long()
    first = cfg.prefix_len + (cfg.seq_len - lengths) * cfg.repeats + lengths  # start of copy 2
    pos = torch.arange(cfg.total_len, device=lengths.device)[None, :]
    return pos >= first[:, None]


@dataclass(frozen=True)
class RepeatedTaskConfig:
    """Training distribution for induction: a random segment of length ``R`` repeated to fill
    ``seq_len`` tokens, with ``R`` drawn per batch from ``[min_segment, max_segment]``.

    ``R`` must vary: with one fixed ``R`` a model solves the repeated part with a purely positional
    rule (attend to ``i − R + 1``) and never forms an induction head. Sequences are truncated to
    exactly ``seq_len`` so every batch has the same shape and every position is trained.

    With ``offset_fraction`` > 0, in that fraction of the batches the repeats start after a
    random-length run of i.i.d. random tokens (per sequence), from step 0: one distribution for the
    whole run (a data change mid-run confounds every dynamic measured after it). The default is 0,
    no offsets: the first copy then always sits in positions ``1..R`` and an induction head only
    needs previous-token information there, so layer 0's previous-token attention forms only in
    the first part of the context (read it with the position profile of the previous-token score,
    not its whole-sequence mean). Offsets from step 0 delay induction past the short runs we train
    (measured in ``docs/training.md``).
    """

    d_vocab: int = 64
    seq_len: int = 64
    min_segment: int = 4
    max_segment: int = 31
    bos_token_id: int | None = 0
    offset_fraction: float = 0.0  # batches whose repeats start after random tokens (from step 0)
    name: str = "repeated"

    def __post_init__(self) -> None:
        if not 2 <= self.min_segment <= self.max_segment:
            raise ConfigError(f"need 2 ≤ min_segment ≤ max_segment, got {self.min_segment}, "
                              f"{self.max_segment}")
        if 2 * self.max_segment + self.prefix_len > self.seq_len:
            raise ConfigError(f"max_segment {self.max_segment} does not repeat twice in "
                              f"{self.seq_len} tokens")
        if not 0 <= self.offset_fraction <= 1:
            raise ConfigError(f"offset_fraction must be in [0, 1], got {self.offset_fraction}")
        self.segment_config(self.min_segment)  # validates the vocabulary

    @property
    def prefix_len(self) -> int:
        """Positions before the first segment (1 with BOS, else 0)."""
        return int(self.bos_token_id is not None)

    @property
    def special_tokens(self) -> tuple[int, ...]:
        """The BOS token id, if any (never drawn as content)."""
        return () if self.bos_token_id is None else (self.bos_token_id,)

    def segment_config(self, segment: int) -> RepeatedTokensConfig:
        """The repeated-tokens config of one segment length ``segment``, repeated to fill ``seq_len``."""
        body = self.seq_len - self.prefix_len
        return RepeatedTokensConfig(d_vocab=self.d_vocab, seq_len=segment,
                                    repeats=max(2, -(-body // segment)),
                                    bos_token_id=self.bos_token_id)

    def sample(self, batch: int, generator: torch.Generator,
               step: int = 0) -> Int[torch.Tensor, "batch pos"]:
        """A training batch ``[batch, seq_len]`` of token ids: one segment length per batch.

        ``step`` is accepted for the task protocol and ignored: the distribution never changes.
        """
        segment = int(torch.randint(self.min_segment, self.max_segment + 1, (1,),
                                    generator=generator))
        offset = float(torch.rand(1, generator=generator)) < self.offset_fraction
        cfg = self.segment_config(segment)
        tokens = repeated_tokens(cfg, batch, generator=generator)[:, : self.seq_len]
        if not offset:
            return tokens
        body = self.seq_len - self.prefix_len
        allowed = cfg.allowed_tokens()
        start = torch.randint(0, body - 2 * segment + 1, (batch, 1), generator=generator)
        noise = allowed[torch.randint(0, len(allowed), (batch, body), generator=generator)]
        pos = torch.arange(body)[None, :]
        # shift each row's periodic body right by its start; the gap holds the noise
        periodic = tokens[:, self.prefix_len:].gather(1, (pos - start).clamp_min(0) % segment)
        body_tokens = torch.where(pos >= start, periodic, noise)
        return torch.cat([tokens[:, : self.prefix_len], body_tokens], dim=1)

    def eval_batch(self, batch: int, seed: int) -> tuple[Int[torch.Tensor, "batch pos"], int]:
        """Two copies of the longest segment that fits: first half vs repeated half."""
        segment = min(self.max_segment, (self.seq_len - self.prefix_len) // 2)
        cfg = RepeatedTokensConfig(d_vocab=self.d_vocab, seq_len=segment, repeats=2,
                                   bos_token_id=self.bos_token_id)
        return repeated_tokens(cfg, batch, seed=seed), self.prefix_len + segment

    def to_dict(self) -> dict:
        """The task's settings as a JSON-ready dict."""
        return dataclasses.asdict(self)
