"""Clean/corrupted prompt pairs and the metrics every causal method reads.

Clean prompts are repeated random tokens (``[BOS] s s`` with ``repeats = 2``). The corrupted prompt
keeps BOS and the last copy but replaces every earlier copy by fresh random tokens, drawn (when the
vocabulary allows) from tokens *not* in the segment, so nothing in the corrupted context can be
copied by induction. The last copy is identical in both, so the correct next tokens there are too.

Metrics are *per sequence*: a ``SequenceMetric`` maps logits ``[..., batch, pos, vocab]`` to
``[..., batch]``, so one call scores many patched copies of a batch stacked along a leading dim.
The number a method reports is the mean over the batch (as TransformerLens' ``patching_metric``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from jaxtyping import Float, Int

from ..errors import ConfigError
from ..scores import scoring_task
from ..tasks.repeated import RepeatedTokensConfig, repeated_tokens

SequenceMetric = Callable[[Float[torch.Tensor, "... batch pos vocab"]], Float[torch.Tensor, "... batch"]]
# What the causal engine runs a model on: token ids, or the input vectors of a model that reads
# vectors (Reddy's network, ``induction_toolkit.reddy``); and what comes out: logits per position,
# or one row of logits per sequence (a classifier). A metric maps either to one value per sequence.
ModelInput = Int[torch.Tensor, "batch pos"] | Float[torch.Tensor, "batch pos d_model"]
Logits = Float[torch.Tensor, "batch pos vocab"] | Float[torch.Tensor, "batch vocab"]


@dataclass(frozen=True)
class NextTokenLogProb:
    """Mean log-probability of the correct next token at the given query positions, per sequence.

    Query position ``i`` predicts ``tokens[:, i + 1]``; ``-NextTokenLogProb`` is the usual loss.
    """

    tokens: Int[torch.Tensor, "batch pos"]
    positions: Int[torch.Tensor, " n_query"]
    name: str = "logprob"

    def __call__(self, logits: Float[torch.Tensor, "... batch pos vocab"]) -> Float[torch.Tensor, "... batch"]:
        pos = self.positions.to(logits.device)
        lp = logits[..., pos, :].float().log_softmax(dim=-1)
        target = self.tokens.to(logits.device)[:, pos + 1].expand(lp.shape[:-1])
        return lp.gather(-1, target[..., None]).squeeze(-1).mean(-1)


@dataclass(frozen=True)
class NextTokenLogit:
    """Mean over the given query positions of the correct next token's logit minus the mean logit.

    An alternative patching metric: it moves linearly with the logits where the log-probability
    saturates, so it suits models whose clean log-probs sit at ≈ 0. Subtracting the mean logit
    makes it, like the log-probability, blind to a constant added to every logit.
    """

    tokens: Int[torch.Tensor, "batch pos"]
    positions: Int[torch.Tensor, " n_query"]
    name: str = "logit"

    def __call__(self, logits: Float[torch.Tensor, "... batch pos vocab"]) -> Float[torch.Tensor, "... batch"]:
        pos = self.positions.to(logits.device)
        lg = logits[..., pos, :].float()
        target = self.tokens.to(logits.device)[:, pos + 1].expand(lg.shape[:-1])
        correct = lg.gather(-1, target[..., None]).squeeze(-1)
        return (correct - lg.mean(-1)).mean(-1)


@dataclass(frozen=True)
class LabelMetric:
    """A per-sequence metric of a classifier (one row of logits per sequence), on some of the rows.

    ``kind``: ``logprob`` (log-probability of the correct label), ``logit`` (its logit minus the
    mean logit) or ``accuracy`` (1 when it is the arg-max). ``rows`` picks the sequences it is
    measured on (several evaluation sets can share one batch), so it returns ``[..., n_rows]``.
    """

    target: Int[torch.Tensor, " batch"]
    rows: Int[torch.Tensor, " n_rows"]
    kind: str = "logprob"
    name: str = "label_logprob"

    def __call__(self, logits: Float[torch.Tensor, "... batch vocab"]) -> Float[torch.Tensor, "... n_rows"]:
        rows = self.rows.to(logits.device)
        lg = logits[..., rows, :].float()
        target = self.target.to(logits.device)[rows].expand(lg.shape[:-1])
        if self.kind == "accuracy":
            return (lg.argmax(-1) == target).float()
        if self.kind == "logprob":
            lg = lg.log_softmax(-1)
        elif self.kind == "logit":
            lg = lg - lg.mean(-1, keepdim=True)
        else:
            raise ConfigError(f"unknown label metric '{self.kind}'; choose logprob, logit or accuracy")
        return lg.gather(-1, target[..., None]).squeeze(-1)


MetricKind = Literal["logprob", "logit"]
METRIC_KINDS: tuple[str, ...] = get_args(MetricKind)


def repeated_query_positions(task: RepeatedTokensConfig) -> Int[torch.Tensor, " n_query"]:
    """Query positions in repeats 2..k (each predicts a token it has seen one copy earlier)."""
    return torch.arange(task.prefix_len + task.seq_len, task.total_len - 1)


def last_copy_query_positions(task: RepeatedTokensConfig) -> Int[torch.Tensor, " n_query"]:
    """Query positions in the last copy; with ``repeats = 2`` the same as the repeated half."""
    return torch.arange(task.total_len - task.seq_len, task.total_len - 1)


def first_half_query_positions(task: RepeatedTokensConfig) -> Int[torch.Tensor, " n_query"]:
    """Query positions inside the first copy predicting its own next token: no induction possible."""
    return torch.arange(task.prefix_len, task.prefix_len + task.seq_len - 1)


@dataclass(frozen=True)
class PromptPair:
    """Clean and corrupted token batches of one repeated-token task, plus the patching metric."""

    clean: Int[torch.Tensor, "batch pos"]
    corrupted: Int[torch.Tensor, "batch pos"]
    task: RepeatedTokensConfig
    seed: int = 0

    @property
    def metric(self) -> "NextTokenLogProb":
        """The default patching metric: correct-token log-prob over the last copy."""
        return self.metric_of("logprob")

    def metric_of(self, kind: str) -> "NextTokenLogit | NextTokenLogProb":
        """``logit``: correct-token logit minus mean logit; ``logprob``: its log-probability;
        either averaged over the query positions of the last (repeated) copy."""
        positions = last_copy_query_positions(self.task)
        if kind == "logit":
            return NextTokenLogit(self.clean, positions, "repeated_logit")
        if kind == "logprob":
            return NextTokenLogProb(self.clean, positions, "repeated_logprob")
        raise ConfigError(f"unknown metric '{kind}'; choose one of {', '.join(METRIC_KINDS)}")

    def to(self, device) -> "PromptPair":
        """A copy of the pair with clean and corrupted tokens moved to ``device``."""
        return PromptPair(self.clean.to(device), self.corrupted.to(device), self.task, self.seed)

    def data_dict(self) -> dict:
        """The pair's data settings (task, lengths, batch, seed, BOS) as a JSON-ready dict."""
        return {"task": "repeated", "seq_len": self.task.seq_len, "repeats": self.task.repeats,
                "batch": int(self.clean.shape[0]), "seed": self.seed,
                "bos_token_id": self.task.bos_token_id, "n_tokens": int(self.clean.shape[1])}


def corrupt_earlier_copies(tokens: Int[torch.Tensor, "batch pos"], task: RepeatedTokensConfig,
                           generator: torch.Generator) -> Int[torch.Tensor, "batch pos"]:
    """Replace every copy but the last by fresh random tokens (BOS kept)."""
    allowed = task.allowed_tokens()
    start, R = task.prefix_len, task.seq_len
    segment = tokens[:, start:start + R].cpu()
    out = tokens.clone().cpu()
    for b in range(tokens.shape[0]):
        pool = allowed[~torch.isin(allowed, segment[b])]
        if len(pool) < R:  # too small a vocabulary to avoid the segment's tokens: any token
            pool = allowed
        for copy in range(task.repeats - 1):
            if R <= len(pool):
                fresh = pool[torch.randperm(len(pool), generator=generator)[:R]]
            else:
                fresh = pool[torch.randint(0, len(pool), (R,), generator=generator)]
            out[b, start + copy * R:start + (copy + 1) * R] = fresh
    return out.to(tokens.device)


def make_prompt_pair(task: RepeatedTokensConfig, batch: int, *, seed: int = 0) -> PromptPair:
    """``batch`` clean repeated-token prompts and their corrupted twins, all from ``seed``."""
    if batch < 1:
        raise ConfigError(f"batch must be ≥ 1, got {batch}")
    gen = torch.Generator().manual_seed(seed)
    clean = repeated_tokens(task, batch, generator=gen)
    corrupted = corrupt_earlier_copies(clean, task, gen)
    return PromptPair(clean, corrupted, task, seed)


def causal_task(model, *, seq_len: int = 25, repeats: int = 2, bos_token_id: int | None = None,
                exclude: tuple[int, ...] = ()) -> tuple[RepeatedTokensConfig, list[str]]:
    """The repeated-token task used by ablation and patching, shrunk to the model's context."""
    if seq_len < 2:
        raise ConfigError(f"seq_len must be ≥ 2 (a copy needs a next token to predict), got {seq_len}")
    task, notes = scoring_task(model, seq_len=seq_len, repeats=repeats, bos_token_id=bos_token_id,
                               exclude=exclude)
    if task.seq_len < 2:
        raise ConfigError(f"the model's context ({model.cfg.n_ctx}) is too short for {repeats} "
                          "repeats of at least 2 tokens")
    return task, notes
