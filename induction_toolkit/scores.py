"""Per-head scores: previous-token, prefix-matching, duplicate-token, copying, OV eigenvalue; ICL.

Definitions follow ``shared/science.md`` (Olsson et al. 2022). With ``A[b, h, i, j]`` a layer's
attention pattern (query ``i``, key ``j``) on tokens ``t``:

- previous-token: mean over ``i ≥ 1`` of ``A[i, i-1]``;
- prefix-matching: total attention on keys ``j ≤ i`` whose *preceding* token equals the current
  token (``t[j-1] == t[i]``), averaged over query positions in repeats 2..k. Defined by tokens, not
  offsets, so a perfect induction head that spreads over several earlier copies still scores 1;
- duplicate-token: total attention on earlier keys ``j < i`` with ``t[j] == t[i]``, same positions;
- copying (activation-based): the head's output for the token it attends to (``v_j W_O``), taken
  through the direct path to the logits (final-norm weights then ``W_U``), mean-subtracted over the
  vocabulary, ReLU'd; the fraction left on the attended token, rescaled from [0, 1] to [-1, 1];
- OV eigenvalue: ``Σλ / Σ|λ|`` (real part) of ``W_E W_V W_O W_U``, norms folded in;
- ICL score: loss at a late token minus loss at an early token (Olsson: 500 and 50 of 512),
  positions scaled to the sequence length.

Every head is scored at once from one forward pass: hooks reduce each layer's pattern to per-head
sums as it is computed, so no layer's activations outlive its own hook.
"""

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
from jaxtyping import Bool, Float, Int
from transformer_lens import HookedTransformer

from .tasks.repeated import RepeatedTokensConfig, repeated_tokens

HeadKind = Literal["previous_token", "prefix_matching", "duplicate_token", "copying", "ov_eigen"]
HEAD_KINDS: tuple[str, ...] = get_args(HeadKind)

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


def previous_token_score(pattern: Float[torch.Tensor, "batch head q k"]) -> Float[torch.Tensor, "head"]:
    """Mean over batch and query positions ``i ≥ 1`` of the attention on key ``i - 1``."""
    sub = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # [batch, head, q-1]
    return sub.mean(dim=(0, 2))


def masked_attention_score(pattern: Float[torch.Tensor, "batch head q k"],
                           mask: Bool[torch.Tensor, "batch q k"],
                           query_positions: Int[torch.Tensor, "n_query"]) -> Float[torch.Tensor, "head"]:
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
    """Token indices (early, late) of the ICL score, Olsson's 50 and 500 of 512 scaled to ``seq_len``."""
    early = max(1, round(ICL_EARLY * seq_len / ICL_CONTEXT))
    late = min(seq_len - 1, round(ICL_LATE * seq_len / ICL_CONTEXT))
    return early, max(late, early)


def icl_score(loss: Float[torch.Tensor, "batch pos_minus_1"]) -> tuple[float, int, int]:
    """Loss at the late token minus loss at the early token; returns (score, early, late).

    ``loss`` is ``per_token_loss`` output, whose column ``i`` is the loss on token ``i + 1``.
    """
    early, late = icl_positions(loss.shape[1] + 1)
    return float(loss[:, late - 1].mean() - loss[:, early - 1].mean()), early, late


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
        scores[layer] = torch.where(ok, eig.sum(-1).real / total.clamp_min(1e-300), 0.0)
        for head in (~ok).nonzero().flatten().tolist():
            notes.append(f"{head_label(layer, head)}: OV circuit is zero; ov_eigen set to 0")
    return scores.float(), notes


# --- the scores object ------------------------------------------------------------------------

@dataclass
class HeadScores:
    """Every head's scores (``[layer, head]`` tensors) plus the ICL score and how it was measured."""

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

    @property
    def n_layers(self) -> int:
        return self.previous_token.shape[0]

    @property
    def n_heads(self) -> int:
        return self.previous_token.shape[1]

    def kind(self, name: str) -> torch.Tensor:
        if name not in HEAD_KINDS:
            raise ValueError(f"unknown score kind {name!r}; one of {HEAD_KINDS}")
        return getattr(self, name)

    def top_heads(self, kind: str, threshold: float | None = None,
                  k: int | None = None) -> list[tuple[int, int, float]]:
        """Heads sorted by ``kind`` (best first), optionally only those ≥ ``threshold``."""
        out = []
        for layer, head, value in rank_heads(self.kind(kind)):
            if threshold is not None and value < threshold:
                break
            out.append((layer, head, value))
        return out[:k] if k is not None else out

    def induction_heads(self, threshold: float = INDUCTION_THRESHOLD):
        return self.top_heads("prefix_matching", threshold)

    def previous_token_heads(self, threshold: float = PREVIOUS_TOKEN_THRESHOLD):
        return self.top_heads("previous_token", threshold)

    def verdict(self) -> str:
        def fmt(heads):
            return ", ".join(f"{head_label(l, h)} ({v:.2f})" for l, h, v in heads) or "none"
        return (f"induction heads: {fmt(self.induction_heads())}; "
                f"previous-token heads: {fmt(self.previous_token_heads())}")

    def heads_list(self) -> list[dict[str, Any]]:
        rows = []
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                row: dict[str, Any] = {"layer": layer, "head": head,
                                       "label": head_label(layer, head)}
                for kind in HEAD_KINDS:
                    row[kind] = finite(float(self.kind(kind)[layer, head]))
                rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        def listed(heads):
            return [{"layer": l, "head": h, "label": head_label(l, h), "score": finite(v)}
                    for l, h, v in heads]
        return {
            "heads": self.heads_list(),
            "induction_heads": listed(self.induction_heads()),
            "previous_token_heads": listed(self.previous_token_heads()),
            "icl_score": finite(self.icl_score),
            "icl_positions": {"early": self.icl_early, "late": self.icl_late},
            "thresholds": {"prefix_matching": INDUCTION_THRESHOLD,
                           "previous_token": PREVIOUS_TOKEN_THRESHOLD},
            "verdict": self.verdict(),
            "data": self.data,
            "notes": list(self.notes),
        }

    def to_table(self, title: str | None = None):
        """A rich table, one row per head; induction and previous-token heads highlighted."""
        from rich.table import Table

        table = Table(title=title, header_style="bold")
        table.add_column("layer", justify="right")
        table.add_column("head", justify="right")
        for name in ("prev-token", "prefix-match", "duplicate", "copying", "OV eigen"):
            table.add_column(name, justify="right")
        induction = {(l, h) for l, h, _ in self.induction_heads()}
        previous = {(l, h) for l, h, _ in self.previous_token_heads()}
        for row in self.heads_list():
            key = (row["layer"], row["head"])
            style = "bold green" if key in induction else "bold cyan" if key in previous else None
            table.add_row(str(row["layer"]), str(row["head"]),
                          *(f"{row[k]:.3f}" for k in HEAD_KINDS), style=style)
        return table


def finite(x: Any) -> float:
    """``x`` as a float, with NaN and ±inf as 0: JSON has no NaN, so results never carry one."""
    value = float(x)
    return value if math.isfinite(value) else 0.0


def rank_heads(values: Float[torch.Tensor, "layer head"]) -> list[tuple[int, int, float]]:
    """``(layer, head, value)`` for every head, largest value first."""
    flat = values.flatten()
    return [(*divmod(i, values.shape[1]), float(flat[i]))
            for i in flat.argsort(descending=True).tolist()]


# --- scoring a model --------------------------------------------------------------------------

def scoring_task(model: HookedTransformer, *, seq_len: int = 25, repeats: int = 4,
                 bos_token_id: int | None = None,
                 exclude: tuple[int, ...] = ()) -> tuple[RepeatedTokensConfig, list[str]]:
    """Olsson's 25 tokens × 4 repeats, shrunk to fit the model's context; returns (task, notes)."""
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


class _Accumulator:
    """Per-layer hooks that reduce attention patterns to per-head sums as the forward pass runs."""

    def __init__(self, model: HookedTransformer, tokens: torch.Tensor, query_positions: torch.Tensor):
        cfg = model.cfg
        self.model = model
        self.tokens = tokens
        self.qpos = query_positions
        self.ind_mask = induction_mask(tokens)
        self.dup_mask = duplicate_mask(tokens)
        z = lambda: torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)
        self.prev, self.prefix, self.dup = z(), z(), z()
        self.copy_sum, self.copy_n = z(), z()
        self._v: dict[int, torch.Tensor] = {}
        self.max_rows = max(_COPYING_MIN_ROWS, _COPYING_BUDGET // cfg.d_vocab_out)
        self.sampled_rows: int | None = None

    def hooks(self) -> list[tuple[str, Any]]:
        out = []
        for layer in range(self.model.cfg.n_layers):
            out.append((f"blocks.{layer}.attn.hook_v", self._save_v(layer)))
            out.append((f"blocks.{layer}.attn.hook_pattern", self._reduce(layer)))
        return out

    def _save_v(self, layer: int):
        def hook(v, hook):
            self._v[layer] = v.detach()
        return hook

    def _reduce(self, layer: int):
        def hook(pattern, hook):
            p = pattern.detach().float()
            self.prev[layer] += previous_token_score(p).double() * p.shape[0]
            self.prefix[layer] += masked_attention_score(p, self.ind_mask, self.qpos).double() * p.shape[0]
            self.dup[layer] += masked_attention_score(p, self.dup_mask, self.qpos).double() * p.shape[0]
            self._copying(layer, p, self._v.pop(layer))
        return hook

    @torch.no_grad()
    def _copying(self, layer: int, pattern: torch.Tensor, v: torch.Tensor) -> None:
        model, cfg = self.model, self.model.cfg
        attended = pattern[:, :, self.qpos, :].argmax(-1)  # [b, h, q]: the most-attended key
        n_b, n_h, n_q = attended.shape
        # Each row costs a d_model × d_vocab product: a full-vocabulary model (GPT-2: 50k tokens)
        # would spend ~30 forward passes here, so large vocabularies score an evenly spaced sample
        # of (sequence, query) rows, the same rows for every head.
        rows = torch.arange(n_b * n_q, device=attended.device)
        if len(rows) > self.max_rows:
            rows = torch.linspace(0, len(rows) - 1, self.max_rows, device=attended.device).long()
            self.sampled_rows = len(rows)
        b_idx, q_idx = rows // n_q, rows % n_q
        att = attended[b_idx, :, q_idx].T  # [h, r]
        if v.shape[2] != n_h:  # grouped-query attention shares values across heads
            v = v.repeat_interleave(n_h // v.shape[2], dim=2)
        heads = torch.arange(n_h, device=v.device)[:, None]
        v_att = v[b_idx[None, :], att, heads].float()  # [h, r, d_head]
        W_O = model.blocks[layer].attn.W_O.detach().float()  # [h, d_head, d_model]
        out = torch.einsum("hrd,hdm->hrm", v_att, W_O)
        if cfg.normalization_type in ("LN", "LNPre"):
            out = out - out.mean(-1, keepdim=True)
        lnf = _norm_weight(model, "ln_final")
        if lnf is not None:
            out = out * lnf.float()
        target = self.tokens[b_idx[None, :], att]  # [h, r]: the attended token
        W_U = model.W_U.detach().float()
        flat_out = out.reshape(-1, out.shape[-1])
        flat_t = target.reshape(-1)
        head_of_row = heads.expand_as(target).reshape(-1)
        chunk = max(1, _COPYING_CHUNK // W_U.shape[1])
        for start in range(0, flat_out.shape[0], chunk):
            logits = flat_out[start:start + chunk] @ W_U
            pos = (logits - logits.mean(-1, keepdim=True)).relu()
            total = pos.sum(-1)
            on_target = pos.gather(-1, flat_t[start:start + chunk, None]).squeeze(-1)
            valid = total > 1e-6 * logits.abs().amax(-1).clamp_min(1e-30)
            frac = torch.where(valid, on_target / total.clamp_min(1e-30), 0.0)
            h = head_of_row[start:start + chunk].cpu()
            self.copy_sum[layer].index_add_(0, h, frac.double().cpu())
            self.copy_n[layer].index_add_(0, h, valid.double().cpu())


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
                bos_token_id: int | None = None, low_memory: bool = False) -> HeadScores:
    """Score every head of ``model`` on repeated random tokens (or on given repeated ``tokens``).

    ``chunk`` bounds how many sequences run through the model at once (default: all).
    ``low_memory``: one sequence at a time unless ``chunk`` says otherwise, and the logits are
    computed a block of positions at a time instead of for every position at once; patterns are
    reduced in their own layer's hook either way, so at most one layer's activations are alive.
    """
    notes: list[str] = []
    if tokens is None:
        if task is None:
            task, notes = scoring_task(model, bos_token_id=bos_token_id)
        tokens = repeated_tokens(task, batch, seed=seed)
    elif task is None:
        raise ValueError("pass the task that generated `tokens` (its repeat structure is needed)")
    if tokens.shape[1] > model.cfg.n_ctx:
        from .errors import ConfigError
        raise ConfigError(f"sequences of {tokens.shape[1]} tokens exceed the model's context "
                          f"({model.cfg.n_ctx}); lower --seq-len or --repeats")
    device = model.cfg.device
    tokens = tokens.to(device)
    qpos = torch.arange(task.prefix_len + task.seq_len, tokens.shape[1], device=device)
    chunk = chunk or (1 if low_memory else tokens.shape[0])
    cfg = model.cfg
    acc_sums = None
    sampled = None
    losses = []
    for start in range(0, tokens.shape[0], chunk):
        part = tokens[start:start + chunk]
        acc = _Accumulator(model, part, qpos)
        if low_memory:
            resid = model.run_with_hooks(part, stop_at_layer=cfg.n_layers, fwd_hooks=acc.hooks())
            losses.append(_loss_from_residual(model, resid, part))
            del resid
        else:
            logits = model.run_with_hooks(part, return_type="logits", fwd_hooks=acc.hooks())
            losses.append(per_token_loss(logits, part).cpu())
            del logits
        sampled = acc.sampled_rows or sampled
        sums = (acc.prev, acc.prefix, acc.dup, acc.copy_sum, acc.copy_n)
        acc_sums = sums if acc_sums is None else tuple(a + b for a, b in zip(acc_sums, sums))
    prev, prefix, dup, copy_sum, copy_n = acc_sums
    n = tokens.shape[0]
    copying = torch.where(copy_n > 0, 2 * copy_sum / copy_n.clamp_min(1) - 1, 0.0)
    for layer, head in (copy_n == 0).nonzero().tolist():
        notes.append(f"{head_label(layer, head)}: output is constant over the vocabulary on the "
                     "direct path; copying set to 0")
    if sampled:
        notes.append(f"copying estimated on {sampled} evenly spaced (sequence, position) rows per "
                     f"head per batch chunk (vocabulary of {cfg.d_vocab_out} tokens)")
    ov, ov_notes = ov_eigen_scores(model)
    icl, early, late = icl_score(torch.cat(losses))
    data = {"task": "repeated", "seq_len": task.seq_len, "repeats": task.repeats, "batch": n,
            "seed": seed, "bos_token_id": task.bos_token_id, "n_tokens": int(tokens.shape[1])}
    return HeadScores(
        previous_token=(prev / n).float(), prefix_matching=(prefix / n).float(),
        duplicate_token=(dup / n).float(), copying=copying.float(), ov_eigen=ov,
        icl_score=icl, icl_early=early, icl_late=late, data=data, notes=notes + ov_notes,
    )
