"""Data distributions: one module per task, each a small config dataclass plus a seeded generator."""

from .repeated import RepeatedTokensConfig, repeated_tokens

__all__ = ["RepeatedTokensConfig", "repeated_tokens"]
