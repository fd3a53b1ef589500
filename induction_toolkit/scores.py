"""Per-head scores: previous-token, prefix-matching, duplicate-token, copying, OV eigenvalue; ICL.

Definitions follow ``docs/scores.md`` (Olsson et al. 2022). With ``A[b, h, i, j]`` a layer's
attention pattern (query ``i``, key ``j``) on tokens ``t``:

- previous-token: mean over ``i ≥ 1`` of ``A[i, i-1]``;
- prefix-matching: total attention on keys ``j ≤ i`` whose *preceding* token equals the current
  token (``t[j-1] == t[i]``), averaged over query positions in repeats 2..k. Defined by tokens, not
  offsets, so a perfect induction head that spreads over several earlier copies still scores 1;
- duplicate-token: total attention on earlier keys ``j < i`` with ``t[j] == t[i]``, same positions;
- copying (activation-based, rank): at each scored query ``i``, ``t*`` is the token at the key the
  head attends to most; the head's direct-path logits are its output ``z_i W_O`` through the final
  norm (centring, weights; its positive per-position scale moves no rank) and ``W_U``. With
  ``rank`` the 0-based rank of ``t*``'s logit among all ``V`` (0 = largest, ties share the mean
  rank), ``copying = mean(1 − 2·rank/(V − 1))`` (1 always top, 0 chance, −1 always bottom) and
  ``copying_top1`` = fraction of queries with rank 0 (chance ``1/V``);
- OV eigenvalue: ``Σλ / Σ|λ|`` (real part) of ``W_E W_V W_O W_U``, norms folded in;
- ICL score: loss at a late token minus loss at an early token (Olsson: 500 and 50 of 512),
  positions scaled to the sequence length. On the scoring sequences it is the induction loss.

The scored sequences vary the segment length per sequence (``R/2..R``, padded in front with fresh
random tokens), so queries "in repeats 2..k" are a per-sequence mask and a head attending by
position to a fixed offset cannot pass for an induction head. The previous-token score is reported
over the whole sequence, as a profile over deciles of the context, and at the keys the induction
heads read (``previous_token_at_read``), which names the previous-token heads when induction heads
exist. A value that cannot be computed is NaN in the tensors and ``None`` in JSON, never 0.

Every head is scored at once from one forward pass: hooks reduce each layer's pattern to per-head
sums as it is computed, so no layer's activations outlive its own hook.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from jaxtyping import Bool, Float, Int
from transformer_lens import HookedTransformer

from .tasks.repeated import (RepeatedTokensConfig, repeated_query_mask,
                             repeated_tokens_with_lengths)

HeadKind = Literal["previous_token", "prefix_matching", "duplicate_token", "copying", "ov_eigen"]
HEAD_KINDS: tuple[str, ...] = get_args(HeadKind)
# every per-head score in the JSON rows (HEAD_KINDS plus the two added with the rank-based copying
# score and the read-weighted previous-token score)
SCORE_KINDS: tuple[str, ...] = HEAD_KINDS + ("copying_top1", "previous_token_at_read")

# A head counts as an induction / previous-token head at or above these scores.
INDUCTION_THRESHOLD = 0.5
PREVIOUS_TOKEN_THRESHOLD = 0.5

# Olsson et al.: loss at token 500 minus loss at token 50, in 512-token contexts.
ICL_LATE, ICL_EARLY, ICL_CONTEXT = 500, 50, 512

# Elements of one chunk of direct-path logits in the copying score (bounds memory for big vocabs).
_COPYING_CHUNK = 1 << 23
# Direct-path logit elements per head per layer in the copying score (bounds its compute): every
# row for toy vocabularies, an evenly spaced sample of ≥ 32 rows for GPT-2-sized ones.
_COPYING_BUDGET = 1 << 21
_COPYING_MIN_ROWS = 32


def head_label(layer: int, head: int) -> str:
    """The label ``L{layer}H{head}`` of a head."""
    return f"L{layer}H{head}"


# --- masks and pattern reductions (pure functions on tensors) ----------------------------------

def induction_mask(tokens: Int[torch.Tensor, "batch pos"]) -> Bool[torch.Tensor, "batch pos pos"]:
    """``mask[b, i, j]``: key ``j ≤ i`` follows an occurrence of the query's token (``t[j-1] == t[i]``)."""
    prev = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], dim=1)
    n = tokens.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()
    causal[:, 0] = False  # key 0 has no preceding token
    return (tokens[:, :, None] == prev[:, None, :]) & causal


def duplicate_mask(tokens: Int[torch.Tensor, "batch pos"]) -> Bool[torch.Tensor, "batch pos pos"]:
    """``mask[b, i, j]``: an earlier key ``j < i`` holds the query's token."""
    n = tokens.shape[1]
    strictly_causal = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril(-1)
    return (tokens[:, :, None] == tokens[:, None, :]) & strictly_causal


def previous_token_score(pattern: Float[torch.Tensor, "batch head q k"]) -> Float[torch.Tensor, " head"]:
    """Mean over batch and query positions ``i ≥ 1`` of the attention on key ``i - 1``."""
    sub = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # [batch, head, q-1]
    return sub.mean(dim=(0, 2))


def masked_attention_score(pattern: Float[torch.Tensor, "batch head q k"],
                           mask: Bool[torch.Tensor, "batch q k"],
                           query_positions: Int[torch.Tensor, " n_query"]) -> Float[torch.Tensor, " head"]:
    """Total attention on the masked keys, averaged over the batch and the given query positions."""
    p = pattern[:, :, query_positions, :]
    m = mask[:, query_positions, :].to(p.dtype)
    return torch.einsum("bhqk,bqk->h", p, m) / (p.shape[0] * p.shape[2])


def per_token_loss(logits: Float[torch.Tensor, "batch pos vocab"],
                   tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos_minus_1"]:
    """``loss[b, i]`` = −log p(t[i+1] | t[≤ i]): the loss on predicting token ``i + 1``."""
    logprobs = logits[:, :-1].float().log_softmax(dim=-1)
    return -logprobs.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def icl_positions(seq_len: int) -> tuple[int, int]:
    """Token indices (early, late): Olsson's 50 and 500 of 512 scaled to ``seq_len`` (window centres)."""
    early = max(1, round(ICL_EARLY * seq_len / ICL_CONTEXT))
    late = min(seq_len - 1, round(ICL_LATE * seq_len / ICL_CONTEXT))
    return early, max(late, early)


# Half-width of each ICL window, as a fraction of the context (Olsson's positions ± 5%).
ICL_WINDOW_FRACTION = 0.05


def icl_windows(seq_len: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inclusive token-index windows ``((early_lo, early_hi), (late_lo, late_hi))`` of the ICL score.

    Olsson's tokens 50 and 500 of 512, scaled to ``seq_len``, each ± 5% of the context, clipped to
    the tokens that have a loss (``1 .. seq_len − 1``). A window of several positions keeps one
    position that a late-forming circuit dominates from deciding the score.
    """
    if seq_len < 4:
        raise ValueError(f"an ICL score needs at least 4 tokens, got {seq_len}")
    half = ICL_WINDOW_FRACTION * seq_len

    def window(centre_of_512: int) -> tuple[int, int]:
        centre = centre_of_512 * seq_len / ICL_CONTEXT
        lo = max(1, math.ceil(centre - half))
        hi = min(seq_len - 1, math.floor(centre + half))
        if hi < lo:  # a context too short for a ±5% window: the nearest valid token
            lo = hi = min(seq_len - 1, max(1, round(centre)))
        return lo, hi

    early, late = window(ICL_EARLY), window(ICL_LATE)
    if late[0] <= early[1]:  # tiny contexts: keep the two windows apart
        late = (early[1] + 1, max(late[1], early[1] + 1))
    return early, late


def windowed_icl_score(loss: Float[torch.Tensor, "batch pos_minus_1"],
                       windows: tuple[tuple[int, int], tuple[int, int]]) -> float:
    """Mean loss (nats) on the late window's tokens minus the early window's (negative = ICL).

    ``loss`` is ``per_token_loss`` output, whose column ``i`` is the loss on token ``i + 1``.
    """
    (e_lo, e_hi), (l_lo, l_hi) = windows
    return float(loss[:, l_lo - 1:l_hi].mean() - loss[:, e_lo - 1:e_hi].mean())


def icl_score(loss: Float[torch.Tensor, "batch pos_minus_1"]) -> tuple[float, int, int]:
    """Windowed ICL score in nats (late window minus early window, ``icl_windows``) and the
    windows' centres ``(score, early, late)``.

    ``loss`` is ``per_token_loss`` output, whose column ``i`` is the loss on token ``i + 1``.
    """
    n_tokens = loss.shape[1] + 1
    early, late = icl_positions(n_tokens)
    return windowed_icl_score(loss, icl_windows(n_tokens)), early, late


# --- weight-based score -----------------------------------------------------------------------

def _norm_weight(model: HookedTransformer, name: str) -> torch.Tensor | None:
    norm = getattr(model, name, None) if "." not in name else model.get_submodule(name)
    w = getattr(norm, "w", None)
    return w.detach() if isinstance(w, torch.Tensor) else None


_VOCAB_BLOCK = 4096  # vocabulary rows per float64 block in ov_eigen_scores


def ov_eigen_scores(model: HookedTransformer) -> tuple[Float[torch.Tensor, "layer head"], list[str]]:
    """``Σλ / Σ|λ|`` of each head's full OV circuit ``W_E W_V W_O W_U``, LayerNorm folded in.

    The nonzero eigenvalues of ``E V O U`` equal those of ``O (U E) V`` (cyclic permutation), a
    ``d_head × d_head`` matrix, so the vocabulary-sized circuit is never formed.
    """
    cfg = model.cfg
    notes: list[str] = []
    centred = cfg.normalization_type in ("LN", "LNPre")
    W_E, W_U = model.W_E.detach(), model.W_U.detach()
    n_shared = min(W_E.shape[0], W_U.shape[1])
    if W_E.shape[0] != W_U.shape[1]:
        notes.append(f"d_vocab ({W_E.shape[0]}) ≠ d_vocab_out ({W_U.shape[1]}): OV eigen scores "
                     f"use the {n_shared} shared token ids")
    lnf = _norm_weight(model, "ln_final")
    lnf = None if lnf is None else lnf.double()[:, None]
    # U·E in float64, a block of the vocabulary at a time: whole float64 copies of the
    # embedding and unembedding would cost 4× the model's embedding (1.2 GB on GPT-2).
    UE = torch.zeros(W_U.shape[0], W_E.shape[1], dtype=torch.float64, device=W_E.device)
    for start in range(0, n_shared, _VOCAB_BLOCK):
        stop = min(start + _VOCAB_BLOCK, n_shared)
        e = W_E[start:stop].double()
        if centred:  # LayerNorm removes the mean of the residual stream before anything reads it
            e = e - e.mean(-1, keepdim=True)
        u = W_U[:, start:stop].double()
        if lnf is not None:
            u = lnf * u
        UE += u @ e  # [d_model, d_model]
    scores = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)
    for layer in range(cfg.n_layers):
        W_V = model.blocks[layer].attn.W_V.detach().double()
        if W_V.shape[0] != cfg.n_heads:  # grouped-query attention shares values across heads
            W_V = W_V.repeat_interleave(cfg.n_heads // W_V.shape[0], dim=0)
        ln1 = _norm_weight(model, f"blocks.{layer}.ln1")
        if ln1 is not None:
            W_V = ln1.double()[None, :, None] * W_V
        W_O = model.blocks[layer].attn.W_O.detach().double()
        if centred:
            W_O = W_O - W_O.mean(-1, keepdim=True)
        M = W_O @ UE @ W_V  # [head, d_head, d_head]
        eig = torch.linalg.eigvals(M)
        total = eig.abs().sum(-1)
        ok = total > 1e-12 * (1 + M.abs().amax(dim=(-2, -1)))
        scores[layer] = torch.where(ok, eig.sum(-1).real / total.clamp_min(1e-300), math.nan)
        for head in (~ok).nonzero().flatten().tolist():
            notes.append(f"{head_label(layer, head)}: OV circuit is zero; ov_eigen is null")
    return scores.float(), notes


# --- the scores object ------------------------------------------------------------------------

@dataclass
class HeadScores:
    """Every head's scores (``[layer, head]`` tensors) plus the ICL score and how it was measured.

    A score that could not be computed is NaN in these tensors, ``None`` in :meth:`to_dict`, "—"
    in :meth:`to_table`, and named in ``notes``; rankings skip it.
    """

    previous_token: Float[torch.Tensor, "layer head"]
    prefix_matching: Float[torch.Tensor, "layer head"]
    duplicate_token: Float[torch.Tensor, "layer head"]
    copying: Float[torch.Tensor, "layer head"]
    ov_eigen: Float[torch.Tensor, "layer head"]
    icl_score: float
    icl_early: int
    icl_late: int
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    copying_top1: Float[torch.Tensor, "layer head"] | None = None
    previous_token_at_read: Float[torch.Tensor, "layer head"] | None = None
    previous_token_profile: Float[torch.Tensor, "layer head bin"] | None = None

    @property
    def n_layers(self) -> int:
        """Number of layers scored."""
        return self.previous_token.shape[0]

    @property
    def n_heads(self) -> int:
        """Number of heads per layer scored."""
        return self.previous_token.shape[1]

    def kind(self, name: str) -> Float[torch.Tensor, "layer head"]:
        """The ``[layer, head]`` tensor of one score (NaN where missing)."""
        if name not in SCORE_KINDS:
            raise ValueError(f"unknown score kind {name!r}; one of {SCORE_KINDS}")
        value = getattr(self, name)
        if value is None:
            return torch.full_like(self.previous_token, math.nan)
        return value

    def top_heads(self, kind: str, threshold: float | None = None,
                  k: int | None = None) -> list[tuple[int, int, float]]:
        """Heads sorted by ``kind`` (best first), optionally only those ≥ ``threshold``; missing
        values are left out."""
        out = []
        for layer, head, value in rank_heads(self.kind(kind)):
            if threshold is not None and value < threshold:
                break
            out.append((layer, head, value))
        return out[:k] if k is not None else out

    def induction_heads(self, threshold: float = INDUCTION_THRESHOLD):
        """``(layer, head, score)`` with prefix-matching (in [0, 1]) ≥ ``threshold``, best first."""
        return self.top_heads("prefix_matching", threshold)

    @property
    def previous_token_kind(self) -> str:
        """The score that names previous-token heads: at the induction heads' keys when there are
        induction heads, else over the whole sequence."""
        at_read = self.previous_token_at_read
        if at_read is not None and bool(torch.isfinite(at_read).any()):
            return "previous_token_at_read"
        return "previous_token"

    def previous_token_heads(self, threshold: float = PREVIOUS_TOKEN_THRESHOLD):
        """``(layer, head, score)`` with ``previous_token_kind`` in [0, 1] ≥ ``threshold``, best first."""
        return self.top_heads(self.previous_token_kind, threshold)

    def verdict(self) -> str:
        """One line naming the induction and previous-token heads with their scores."""
        def fmt(heads):
            return ", ".join(f"{head_label(l, h)} ({v:.2f})" for l, h, v in heads) or "none"
        return (f"induction heads: {fmt(self.induction_heads())}; "
                f"previous-token heads: {fmt(self.previous_token_heads())}")

    def heads_list(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per head with every score (attention in [0, 1], copying in [−1, 1])."""
        rows = []
        profile = self.previous_token_profile
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                row: dict[str, Any] = {"layer": layer, "head": head,
                                       "label": head_label(layer, head)}
                for kind in SCORE_KINDS:
                    row[kind] = finite(self.kind(kind)[layer, head])
                row["previous_token_profile"] = (
                    None if profile is None else [finite(x) for x in profile[layer, head]])
                rows.append(row)
        return rows

    def icl_windows(self) -> dict[str, list[int]]:
        """Inclusive token windows ``{"early": [lo, hi], "late": [lo, hi]}`` the ICL score averages."""
        (e_lo, e_hi), (l_lo, l_hi) = icl_windows(int(self.data.get("n_tokens", 2 * self.icl_late)))
        return {"early": [e_lo, e_hi], "late": [l_lo, l_hi]}

    def icl_window_text(self) -> str:
        """The ICL score's windows in words: "mean loss on tokens a–b − tokens c–d"."""
        w = self.icl_windows()
        return (f"mean loss on tokens {w['late'][0]}–{w['late'][1]} − "
                f"tokens {w['early'][0]}–{w['early'][1]}")

    def to_dict(self) -> dict[str, Any]:
        """The scores as a JSON-ready dict: per-head scores, named heads, ICL score (nats), thresholds."""
        def listed(heads):
            return [{"layer": l, "head": h, "label": head_label(l, h), "score": finite(v)}
                    for l, h, v in heads]
        return {
            "heads": self.heads_list(),
            "induction_heads": listed(self.induction_heads()),
            "previous_token_heads": listed(self.previous_token_heads()),
            "previous_token_heads_by": self.previous_token_kind,
            "icl_score": finite(self.icl_score),
            "icl_positions": {"early": self.icl_early, "late": self.icl_late},
            "icl_windows": self.icl_windows(),
            "thresholds": {"prefix_matching": INDUCTION_THRESHOLD,
                           "previous_token": PREVIOUS_TOKEN_THRESHOLD},
            "verdict": self.verdict(),
            "data": self.data,
            "notes": list(self.notes),
        }

    def to_table(self, title: str | None = None):
        """A rich table, one row per head; induction and previous-token heads highlighted."""
        from rich.table import Table

        # short headers so the table fits an 80-column terminal
        columns = [("prev-tok", "previous_token"), ("@read", "previous_token_at_read"),
                   ("prefix-match", "prefix_matching"), ("dup", "duplicate_token"),
                   ("copying", "copying"), ("top-1", "copying_top1"), ("OV eig", "ov_eigen")]
        table = Table(title=title, header_style="bold", caption=(
            "prev-tok: previous-token score over the whole sequence; @read: at the keys the "
            "induction heads read; dup: duplicate-token; top-1: copying_top1; "
            f"{MISSING}: cannot be computed (see notes)"))
        table.add_column("head")
        for name, _ in columns:
            table.add_column(name, justify="right")
        induction = {(l, h) for l, h, _ in self.induction_heads()}
        previous = {(l, h) for l, h, _ in self.previous_token_heads()}
        for row in self.heads_list():
            key = (row["layer"], row["head"])
            style = "bold green" if key in induction else "bold cyan" if key in previous else None
            table.add_row(row["label"], *(fmt_score(row[k]) for _, k in columns), style=style)
        return table


MISSING = "—"


def fmt_score(value: float | None, spec: str = ".3f") -> str:
    """A score for a table: formatted with ``spec``, or "—" when it is missing."""
    return MISSING if value is None else format(value, spec)


def finite(x: Any) -> float | None:
    """``x`` as a float, or ``None`` when it is NaN or ±inf (a value that could not be computed).

    JSON has no NaN, and 0 would rank a missing value above real heads' negative scores.
    """
    value = float(x)
    return value if math.isfinite(value) else None


def rank_heads(values: Float[torch.Tensor, "layer head"]) -> list[tuple[int, int, float]]:
    """``(layer, head, value)`` for every head with a finite value, largest first (ties: lower
    layer, then lower head, first)."""
    flat = values.detach().flatten().double().cpu()
    ok = torch.isfinite(flat).nonzero().flatten()
    order = ok[flat[ok].argsort(descending=True, stable=True)]
    return [(*divmod(i, values.shape[1]), float(flat[i])) for i in order.tolist()]


# --- scoring a model --------------------------------------------------------------------------

def scoring_task(model: HookedTransformer, *, seq_len: int = 25, repeats: int = 4,
                 bos_token_id: int | None = None,
                 exclude: tuple[int, ...] = ()) -> tuple[RepeatedTokensConfig, list[str]]:
    """Olsson's 25 tokens × 4 repeats, shrunk to fit the model's context; returns (task, notes).

    The task has one segment length; :func:`score_model` varies it per sequence (``R/2..R``) by
    default, see :func:`varied`.
    """
    notes = []
    n_ctx = model.cfg.n_ctx
    bos = int(bos_token_id is not None)
    if seq_len * repeats + bos > n_ctx:
        if (n_ctx - bos) // repeats < 2:
            repeats = 2
        shrunk = max(1, (n_ctx - bos) // repeats)
        notes.append(f"sequence shrunk to {shrunk} tokens × {repeats} repeats to fit n_ctx={n_ctx}")
        seq_len = shrunk
    task = RepeatedTokensConfig(d_vocab=model.cfg.d_vocab, seq_len=seq_len, repeats=repeats,
                                bos_token_id=bos_token_id, exclude=tuple(exclude))
    return task, notes


def varied(task: RepeatedTokensConfig) -> RepeatedTokensConfig:
    """``task`` with the segment length drawn per sequence, uniformly in ``[⌈R/2⌉, R]``."""
    if task.min_seq_len is not None:
        return task
    return dataclasses.replace(task, min_seq_len=max(1, (task.seq_len + 1) // 2))


N_PROFILE_BINS = 10  # deciles of the scored context


def profile_bins(n_tokens: int) -> list[tuple[int, int]]:
    """``[start, stop)`` query positions of each decile of an ``n_tokens``-long sequence."""
    return [(-(-k * n_tokens // N_PROFILE_BINS), -(-(k + 1) * n_tokens // N_PROFILE_BINS))
            for k in range(N_PROFILE_BINS)]


class _Accumulator:
    """Per-layer hooks that reduce attention patterns and head outputs to per-head sums as the
    forward pass runs (only the small per-position vectors below are kept)."""

    def __init__(self, model: HookedTransformer, tokens: torch.Tensor, qmask: torch.Tensor,
                 max_rows: int):
        cfg = model.cfg
        self.model = model
        self.tokens = tokens
        self.qmask = qmask  # [b, pos]: queries in repeats 2..k
        self.ind_mask = induction_mask(tokens) & qmask[:, :, None]
        self.dup_mask = duplicate_mask(tokens) & qmask[:, :, None]
        def z() -> torch.Tensor:
            return torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)

        self.prefix, self.dup = z(), z()
        self.copy_sum, self.top1_sum, self.copy_n = z(), z(), z()
        # [layer, head, b, pos - 1]: A[i, i-1] for i ≥ 1;  [layer, head, b, pos]: attention each
        # key receives from the scored queries
        self.sub = torch.zeros(cfg.n_layers, cfg.n_heads, *tokens.shape, dtype=torch.float64)[..., 1:]
        self.read = torch.zeros(cfg.n_layers, cfg.n_heads, *tokens.shape, dtype=torch.float64)
        rows = qmask.nonzero()  # (b, i) pairs of the scored queries
        # Each row costs a d_model × d_vocab product: a full-vocabulary model (GPT-2: 50k tokens)
        # would spend ~30 forward passes here, so large vocabularies score an evenly spaced sample
        # of (sequence, query) rows, the same rows for every head.
        self.sampled_rows: int | None = None
        if len(rows) > max_rows:
            pick = torch.linspace(0, len(rows) - 1, max_rows, device=rows.device).long()
            rows = rows[pick]
            self.sampled_rows = len(rows)
        self.b_idx, self.i_idx = rows[:, 0], rows[:, 1]
        self._target: dict[int, torch.Tensor] = {}

    def hooks(self) -> list[tuple[str, Any]]:
        out = []
        for layer in range(self.model.cfg.n_layers):
            out.append((f"blocks.{layer}.attn.hook_pattern", self._reduce(layer)))
            out.append((f"blocks.{layer}.attn.hook_z", self._copying(layer)))
        return out

    def _reduce(self, layer: int):
        def hook(pattern, hook):
            p = pattern.detach().float()
            self.sub[layer] = p.diagonal(offset=-1, dim1=-2, dim2=-1).transpose(0, 1).double().cpu()
            q = self.qmask.to(p.dtype)
            self.read[layer] = torch.einsum("bhqk,bq->hbk", p, q).double().cpu()
            self.prefix[layer] += torch.einsum("bhqk,bqk->h", p, self.ind_mask.to(p.dtype)).double().cpu()
            self.dup[layer] += torch.einsum("bhqk,bqk->h", p, self.dup_mask.to(p.dtype)).double().cpu()
            # t*: the token at the most-attended key (argmax takes the first of tied keys)
            attended = p[self.b_idx, :, self.i_idx, :].argmax(-1)  # [r, h]
            self._target[layer] = self.tokens[self.b_idx[:, None], attended].T  # [h, r]
        return hook

    def _copying(self, layer: int):
        @torch.no_grad()
        def hook(z, hook):
            model, cfg = self.model, self.model.cfg
            target = self._target.pop(layer)
            z_rows = z.detach()[self.b_idx, self.i_idx].float()  # [r, h, d_head]
            W_O = model.blocks[layer].attn.W_O.detach().float()  # [h, d_head, d_model]
            out = torch.einsum("rhd,hdm->hrm", z_rows, W_O)
            # The final norm acts on the head's share of the residual linearly: centring (LN),
            # its weights, and 1/scale at the position. The scale is one positive number per
            # position, so it moves no rank and is left out; the norm's bias and b_U are not the
            # head's and are left out too.
            if cfg.normalization_type in ("LN", "LNPre"):
                out = out - out.mean(-1, keepdim=True)
            lnf = _norm_weight(model, "ln_final")
            if lnf is not None:
                out = out * lnf.float()
            W_U = model.W_U.detach().float()
            n_vocab = W_U.shape[1]
            flat_out = out.reshape(-1, out.shape[-1])
            flat_t = target.reshape(-1)
            head_of_row = torch.arange(out.shape[0])[:, None].expand(target.shape).reshape(-1)
            chunk = max(1, _COPYING_CHUNK // n_vocab)
            for start in range(0, flat_out.shape[0], chunk):
                logits = flat_out[start:start + chunk] @ W_U
                rank, valid = _rank_of(logits, flat_t[start:start + chunk])
                score = 1 - 2 * rank / (n_vocab - 1)
                top1 = (rank == 0).double()
                h = head_of_row[start:start + chunk]
                self.copy_sum[layer].index_add_(0, h, torch.where(valid, score, 0.0).cpu())
                self.top1_sum[layer].index_add_(0, h, torch.where(valid, top1, 0.0).cpu())
                self.copy_n[layer].index_add_(0, h, valid.double().cpu())
        return hook


def _rank_of(logits: Float[torch.Tensor, "row vocab"],
             target: Int[torch.Tensor, " row"]) -> tuple[Float[torch.Tensor, " row"], Bool[torch.Tensor, " row"]]:
    """0-based rank of each row's target logit (0 = largest; tied logits share the mean of the
    ranks they span), and whether the row's logits differ at all (a head with no output: not)."""
    own = logits.gather(-1, target[:, None])
    greater = (logits > own).sum(-1).double()
    equal = (logits == own).sum(-1).double()  # ≥ 1: the target itself
    rank = greater + (equal - 1) / 2
    spread = logits.amax(-1) - logits.amin(-1)
    valid = spread > 1e-6 * logits.abs().amax(-1)
    return rank, valid


# Elements of one block of logits in the low-memory per-token loss.
_LOW_MEMORY_LOGITS = 1 << 20


def _loss_from_residual(model: HookedTransformer, resid: Float[torch.Tensor, "batch pos d_model"],
                        tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos_minus_1"]:
    """``per_token_loss`` from the final residual stream, unembedding a block of positions at a time.

    The final norm and unembedding act on each position alone, so blocks give the same numbers as
    one pass, without ever holding ``pos × d_vocab`` logits for a whole sequence.
    """
    cfg = model.cfg
    cap = getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0
    width = max(1, _LOW_MEMORY_LOGITS // (cfg.d_vocab_out * tokens.shape[0]))
    out = []
    for start in range(0, tokens.shape[1] - 1, width):
        x = resid[:, start:start + width]
        if cfg.normalization_type is not None:
            x = model.ln_final(x)
        logits = model.unembed(x)
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        # per_token_loss drops the last position; give it one more target position instead.
        targets = tokens[:, start:start + width + 1]
        if targets.shape[1] == logits.shape[1]:
            logits = logits[:, :-1]
        logprobs = logits.float().log_softmax(dim=-1)
        out.append(-logprobs.gather(-1, targets[:, 1:, None]).squeeze(-1).cpu())
        del logits, logprobs
    return torch.cat(out, dim=1)


@torch.no_grad()
def score_model(model: HookedTransformer, *, task: RepeatedTokensConfig | None = None,
                tokens: Int[torch.Tensor, "batch pos"] | None = None, batch: int = 32,
                seed: int = 0, chunk: int | None = None,
                bos_token_id: int | None = None, low_memory: bool = False,
                vary_segment: bool = True,
                segment_lengths: Int[torch.Tensor, " batch"] | None = None) -> HeadScores:
    """Score every head of ``model`` on repeated random tokens (or on given repeated ``tokens``).

    ``vary_segment`` (default): each generated sequence draws its segment length in
    ``[⌈R/2⌉, R]`` (see :func:`varied`), so no head can score by attending to a fixed offset.
    Given ``tokens`` are scored as they are; pass ``segment_lengths`` when ``task`` varies ``R``.
    ``chunk`` bounds how many sequences run through the model at once (default: all).
    ``low_memory``: one sequence at a time unless ``chunk`` says otherwise, and the logits are
    computed a block of positions at a time instead of for every position at once; patterns are
    reduced in their own layer's hook either way, so at most one layer's activations are alive.
    """
    notes: list[str] = []
    if tokens is None:
        if task is None:
            task, notes = scoring_task(model, bos_token_id=bos_token_id)
        if vary_segment:
            task = varied(task)
        tokens, segment_lengths = repeated_tokens_with_lengths(task, batch, seed=seed)
    elif task is None:
        raise ValueError("pass the task that generated `tokens` (its repeat structure is needed)")
    elif segment_lengths is None:
        if task.min_seq_len is not None:
            raise ValueError("the task varies its segment length: pass `segment_lengths`")
        segment_lengths = torch.full((tokens.shape[0],), task.seq_len, dtype=torch.long)
    if tokens.shape[1] > model.cfg.n_ctx:
        from .errors import ConfigError
        raise ConfigError(f"sequences of {tokens.shape[1]} tokens exceed the model's context "
                          f"({model.cfg.n_ctx}); lower --seq-len or --repeats")
    if tokens.shape[1] != task.total_len:
        raise ValueError(f"tokens have {tokens.shape[1]} positions, the task {task.total_len}")
    if tokens.shape[1] < 4:  # was a ValueError traceback from icl_windows at the very end
        from .errors import ConfigError
        raise ConfigError(f"sequences of {tokens.shape[1]} tokens are too short to score (the ICL "
                          "score needs at least 4); raise --seq-len or --repeats")
    device = model.cfg.device
    tokens = tokens.to(device)
    qmask = repeated_query_mask(task, segment_lengths.cpu()).to(device)
    chunk = chunk or (1 if low_memory else tokens.shape[0])
    cfg = model.cfg
    max_rows = max(_COPYING_MIN_ROWS, _COPYING_BUDGET // cfg.d_vocab_out)
    sums = None
    subs, reads = [], []
    sampled = None
    losses = []
    for start in range(0, tokens.shape[0], chunk):
        part = tokens[start:start + chunk]
        acc = _Accumulator(model, part, qmask[start:start + chunk], max_rows)
        if low_memory:
            resid = model.run_with_hooks(part, stop_at_layer=cfg.n_layers, fwd_hooks=acc.hooks())
            losses.append(_loss_from_residual(model, resid, part))
            del resid
        else:
            logits = model.run_with_hooks(part, return_type="logits", fwd_hooks=acc.hooks())
            losses.append(per_token_loss(logits, part).cpu())
            del logits
        sampled = acc.sampled_rows or sampled
        part_sums = (acc.prefix, acc.dup, acc.copy_sum, acc.top1_sum, acc.copy_n)
        sums = part_sums if sums is None else tuple(a + b for a, b in zip(sums, part_sums))
        subs.append(acc.sub)
        reads.append(acc.read)
    prefix, dup, copy_sum, top1_sum, copy_n = sums
    sub = torch.cat(subs, dim=2)  # [layer, head, batch, pos - 1]: A[i, i-1] for i = 1..pos-1
    read = torch.cat(reads, dim=2)  # [layer, head, batch, pos]
    n_query = int(qmask.sum())
    nan = torch.tensor(math.nan, dtype=torch.float64)
    copying = torch.where(copy_n > 0, copy_sum / copy_n.clamp_min(1), nan)
    copying_top1 = torch.where(copy_n > 0, top1_sum / copy_n.clamp_min(1), nan)
    for layer, head in (copy_n == 0).nonzero().tolist():
        notes.append(f"{head_label(layer, head)}: output gives every token the same direct-path "
                     "logit (no output); copying and copying_top1 are null")
    if sampled:
        notes.append(f"copying estimated on {sampled} evenly spaced (sequence, position) rows per "
                     f"head per batch chunk (vocabulary of {cfg.d_vocab_out} tokens)")

    previous = sub.mean(dim=(2, 3))
    n_tok = tokens.shape[1]
    bins = profile_bins(n_tok)
    profile = torch.full((cfg.n_layers, cfg.n_heads, len(bins)), math.nan, dtype=torch.float64)
    for k, (lo, hi) in enumerate(bins):
        lo = max(lo, 1)  # query 0 has no previous token
        if hi > lo:
            profile[..., k] = sub[..., lo - 1:hi - 1].mean(dim=(2, 3))
    prefix_matching = prefix / max(n_query, 1)
    induction = rank_heads(prefix_matching)
    readers = [(l, h) for l, h, v in induction if v >= INDUCTION_THRESHOLD]
    at_read = torch.full_like(previous, math.nan)
    if readers:
        weight = sum(read[l, h] for l, h in readers)[:, 1:]  # [batch, pos - 1]: keys j ≥ 1
        at_read = torch.einsum("lhbj,bj->lh", sub, weight) / weight.sum().clamp_min(1e-30)
        notes.append("previous-token heads are named by previous_token_at_read: each head's "
                     "attention to the previous token at key positions weighted by the attention "
                     f"the induction heads ({', '.join(head_label(l, h) for l, h in readers)}) "
                     "pay them from repeats 2..k; previous_token is the whole-sequence mean")
    else:
        notes.append("no induction head: previous_token_at_read is null and previous-token heads "
                     "are named by the whole-sequence previous_token score")

    ov, ov_notes = ov_eigen_scores(model)
    icl, early, late = icl_score(torch.cat(losses))
    notes.append("icl_score here is measured on the scoring sequences (repeated random tokens), "
                 "where it is the induction loss: do not use it to locate a phase change")
    lengths = segment_lengths.tolist()
    data = {"task": "repeated", "seq_len": task.seq_len, "repeats": task.repeats,
            "batch": int(tokens.shape[0]), "seed": seed, "bos_token_id": task.bos_token_id,
            "n_tokens": n_tok, "segment_lengths": lengths,
            "segment_length_range": [min(lengths), max(lengths)],
            "n_query_positions": n_query,
            "previous_token_profile_bins": [[max(lo, 1), hi] for lo, hi in bins]}
    return HeadScores(
        previous_token=previous.float(), prefix_matching=prefix_matching.float(),
        duplicate_token=(dup / max(n_query, 1)).float(), copying=copying.float(), ov_eigen=ov,
        icl_score=icl, icl_early=early, icl_late=late, data=data, notes=notes + ov_notes,
        copying_top1=copying_top1.float(), previous_token_at_read=at_read.float(),
        previous_token_profile=profile.float(),
    )
