"""Reading a circuit off the weights alone: one call, one result object.

``analyze_weights(model)`` folds LayerNorm into a copy, then for every head computes the
sub-diagonal score of its position–position QK block, the OV eigenvalue copying score
(``scores.ov_eigen_scores``), and the Q-, K- and V-composition scores of every (earlier → later)
pair minus a random baseline. Matrices for figures are computed on demand from the folded copy
(``WeightAnalysis.qk_blocks`` …), so a large model never holds every head's blocks at once.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from transformer_lens import HookedRootModule

from ..errors import InductionToolkitError
from ..scores import finite, fmt_score, head_label, ov_eigen_scores
from . import circuits
from .composition import BASELINE_SAMPLES, MODES, composition_scores, random_baseline

DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_POSITIONS = 2048
DEFAULT_PARTNERS = 4

Head = tuple[int, int]


@dataclass
class WeightAnalysis:
    """Per-head weight scores and composition scores of one model.

    ``subdiagonal`` is None when the model has no positional embedding matrix (rotary).
    ``composition[mode]`` is the raw ``[layer, head, layer, head]`` tensor (TransformerLens layout);
    ``baseline[mode]`` the mean random score subtracted in every reported ``score``.
    ``virtual_k[(l, h)]`` lists, for a head in layer ≥ 1, its strongest K-composition sources with
    the diagonal score of the virtual token–token block through each (high ⇒ token matching).
    """

    n_layers: int
    n_heads: int
    subdiagonal: Float[torch.Tensor, "layer head"] | None
    ov_eigen: Float[torch.Tensor, "layer head"]
    composition: dict[str, Float[torch.Tensor, "layer head layer head"]]
    baseline: dict[str, float]
    baseline_samples: int
    token_ids: torch.Tensor
    n_positions: int | None
    virtual_k: dict[Head, list[dict[str, Any]]]
    notes: list[str] = field(default_factory=list)
    model: HookedRootModule | None = field(default=None, repr=False)  # the LayerNorm-folded copy
    basis: circuits.Basis | None = field(default=None, repr=False)  # the task's, for vector inputs

    # --- numbers ---------------------------------------------------------------------------

    def heads(self) -> list[Head]:
        """Every ``(layer, head)`` pair, layer-major."""
        return [(l, h) for l in range(self.n_layers) for h in range(self.n_heads)]

    def composition_score(self, mode: str) -> Float[torch.Tensor, "layer head layer head"]:
        """Baseline-subtracted scores; entries that are not (earlier → later) pairs stay 0."""
        raw = self.composition[mode]
        mask = torch.arange(self.n_layers)[:, None, None, None] < torch.arange(self.n_layers)[None, None, :, None]
        return torch.where(mask, raw - self.baseline[mode], torch.zeros_like(raw))

    def partners(self, mode: str) -> dict[Head, dict[str, Any] | None]:
        """``partner(mode, l, h)`` for every head at once."""
        score = self.composition_score(mode)
        return {(l, h): _best_partner(score, l, h) for l, h in self.heads()}

    def composition_pairs(self, mode: str, top: int | None = None) -> list[dict[str, Any]]:
        """Every (earlier → later) pair, strongest first: ``{"from", "to", "score", "raw"}``."""
        raw = self.composition[mode]
        rows = [{"from": [l1, h1], "to": [l2, h2], "score": float(raw[l1, h1, l2, h2]) - self.baseline[mode],
                 "raw": float(raw[l1, h1, l2, h2])}
                for l1, h1 in self.heads() for l2, h2 in self.heads() if l1 < l2]
        rows.sort(key=lambda r: (-r["score"], r["from"], r["to"]))
        return rows if top is None else rows[:top]

    def partner(self, mode: str, layer: int, head: int) -> dict[str, Any] | None:
        """The strongest partner of a head in either direction (it reads from / writes to it)."""
        return _best_partner(self.composition_score(mode), layer, head)

    def k_sources(self, layer: int, head: int, k: int) -> list[Head]:
        """The ``k`` earlier heads with the strongest K-composition into ``(layer, head)``."""
        if layer == 0 or k < 1:
            return []
        raw = self.composition["K"][:layer, :, layer, head]
        order = torch.argsort(raw.flatten(), descending=True, stable=True)[:k]
        return [divmod(int(i), self.n_heads) for i in order]

    # --- matrices for figures (computed on demand) -------------------------------------------

    def _embeddings(self):
        if self.basis is not None:
            return _basis_vectors(self.basis, self.n_positions)
        return circuits.embeddings(self._folded(), self.token_ids, self.n_positions)

    def _folded(self) -> HookedRootModule:
        if self.model is None:
            raise InductionToolkitError("this WeightAnalysis holds no model (built from a dict?)")
        return self.model

    def qk_blocks(self, layer: int, head: int) -> dict[str, torch.Tensor]:
        """One head's QK blocks (``tt``, ``tp``, ``pt``, ``pp``; attention logits) on the sampled tokens."""
        E, P = self._embeddings()
        return circuits.qk_blocks(self._folded(), layer, head, E, P)

    def ov_block(self, layer: int, head: int) -> torch.Tensor:
        """One head's OV circuit ``E W_V W_O W_U`` on the sampled tokens (logits, attended × output token)."""
        E, _ = self._embeddings()
        return circuits.ov_block(self._folded(), layer, head, self.token_ids, E, self.basis)

    def virtual_k_block(self, src: Head, dst: Head) -> torch.Tensor:
        """The token–token K-composition block of ``dst`` reading ``src``'s output (attention logits)."""
        E, _ = self._embeddings()
        return circuits.virtual_k_block(self._folded(), src, dst, E)

    # --- presentation ----------------------------------------------------------------------

    def head_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per head: sub-diagonal score (std devs), OV eigen score, partners, virtual K."""
        rows = []
        partners = {m: self.partners(m) for m in MODES}
        for l, h in self.heads():
            rows.append({
                "layer": l, "head": h, "label": head_label(l, h),
                "subdiagonal": None if self.subdiagonal is None else finite(self.subdiagonal[l, h]),
                "ov_eigen": finite(self.ov_eigen[l, h]),
                **{f"{m.lower()}_partner": partners[m][(l, h)] for m in MODES},
                "virtual_k": self.virtual_k.get((l, h), []),
            })
        return rows

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """The ``induct weights --json`` document; ``top`` limits each composition list."""
        return {
            "heads": self.head_rows(),
            "k_composition": self.composition_pairs("K", top),
            "q_composition": self.composition_pairs("Q", top),
            "v_composition": self.composition_pairs("V", top),
            "baseline": {m: self.baseline[m] for m in MODES},
            "baseline_samples": self.baseline_samples,
            "tokens": {"n": int(self.token_ids.numel()), "sampled": bool(self._sampled_tokens)},
            "n_positions": self.n_positions,
            **({} if self.basis is None else {"basis": _basis_summary(self.basis)}),
            "orientation": "rows = queries, columns = keys; sub-diagonal = key is query − 1",
            "notes": list(self.notes),
        }

    @property
    def _sampled_tokens(self) -> bool:
        return (self.basis is None and self.model is not None
                and self.token_ids.numel() < self.model.cfg.d_vocab)

    def to_table(self, title: str | None = None):
        """A rich table of each head's sub-diagonal and OV eigen scores and its strongest Q/K/V partners."""
        from rich.table import Table

        table = Table(title=title)
        for name in ("head", "sub-diag", "OV eigen", "Q partner", "K partner", "V partner"):
            table.add_column(name, justify="left" if name == "head" or "partner" in name else "right")
        for row in self.head_rows():
            sub = "—" if row["subdiagonal"] is None else f"{row['subdiagonal']:+.2f}"
            table.add_row(row["label"], sub, fmt_score(row["ov_eigen"], "+.2f"),
                          *(_fmt_partner(row[f"{m.lower()}_partner"]) for m in MODES))
        return table


def _basis_vectors(basis: circuits.Basis, n_positions: int | None):
    E = basis.E.detach().to("cpu", torch.float64)
    P = None if basis.P is None or not n_positions else basis.P[:n_positions].detach().to("cpu", torch.float64)
    return E, P


def _basis_summary(basis: circuits.Basis) -> dict[str, Any]:
    """How many basis vectors of each kind (names like ``class 3`` count as ``class``)."""
    kinds: dict[str, int] = {}
    for name in basis.names:
        kind = name.split(" ")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return {"tokens": kinds, "positions": None if basis.P is None else int(basis.P.shape[0])}


def _best_partner(score: torch.Tensor, layer: int, head: int) -> dict[str, Any] | None:
    # earlier heads this one reads from, then later heads it writes to; ties go to the first
    n_layers, n_heads = score.shape[0], score.shape[1]
    cands = [(float(score[l, h, layer, head]), (l, h), "from") for l in range(layer) for h in range(n_heads)]
    cands += [(float(score[layer, head, l, h]), (l, h), "to")
              for l in range(layer + 1, n_layers) for h in range(n_heads)]
    if not cands:
        return None
    value, (l, h), direction = max(cands, key=lambda c: c[0])
    return {"head": [l, h], "label": head_label(l, h), "score": value, "direction": direction}


def _fmt_partner(p: dict[str, Any] | None) -> str:
    if p is None:
        return "—"
    arrow = "←" if p["direction"] == "from" else "→"
    return f"{arrow} {p['label']} {p['score']:+.3f}"


def analyze_weights(model: HookedRootModule, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                    max_positions: int = DEFAULT_MAX_POSITIONS, partners: int = DEFAULT_PARTNERS,
                    baseline_samples: int = BASELINE_SAMPLES, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None,
                    basis: circuits.Basis | None = None) -> WeightAnalysis:
    """Read every head's QK/OV circuits and composition scores off the weights of ``model``.

    ``max_tokens``: token blocks use all tokens up to this many, else a seeded sample of this many.
    ``max_positions``: position blocks use the first ``min(n_ctx, max_positions)`` positions.
    ``partners``: how many K-composition sources get a virtual block per layer-≥1 head.
    ``baseline_samples``/``seed``: the random-matrix baseline. ``progress(done, total)`` per step.
    ``basis``: the vectors to read token and position blocks in, for a model without ``W_E``
    (its task supplies them: ``induction_toolkit.analysis_data``); ``max_tokens`` does not apply.
    The caller's model is never modified.
    """
    for name, value in (("max_tokens", max_tokens), ("max_positions", max_positions),
                        ("baseline_samples", baseline_samples)):
        if value < 1:
            raise InductionToolkitError(f"{name} must be ≥ 1, got {value}")
    if partners < 0:
        raise InductionToolkitError(f"partners must be ≥ 0, got {partners}")
    folded, notes = circuits.folded_copy(model)
    cfg = folded.cfg
    if basis is None:
        token_ids = circuits.token_sample(cfg.d_vocab, max_tokens, seed)
        if token_ids.numel() < cfg.d_vocab:
            notes.append(f"token blocks use a seeded sample of {token_ids.numel()} of {cfg.d_vocab} tokens")
        positions = circuits.has_positions(folded)
        n_ctx = cfg.n_ctx
    else:
        token_ids = torch.arange(basis.E.shape[0])
        notes.extend(basis.notes)
        positions = basis.P is not None
        n_ctx = basis.P.shape[0] if positions else cfg.n_ctx
    n_positions = min(n_ctx, max_positions) if positions else None
    if not positions and basis is not None:
        notes.append("the basis has no position vectors: P blocks skipped")
    elif not positions:
        notes.append(circuits.ROTARY_NOTE if cfg.positional_embedding_type == "rotary" else
                     f"no positional embedding matrix ({cfg.positional_embedding_type}): P blocks skipped")
    elif n_positions < n_ctx:
        notes.append(f"position blocks use the first {n_positions} of {n_ctx} positions")
    if positions and n_positions < circuits.MIN_KEYS:
        notes.append(f"sub-diagonal score needs ≥ {circuits.MIN_KEYS} positions, the block has "
                     f"{n_positions}: not computed")

    total = 3 * cfg.n_layers + cfg.n_layers * cfg.n_heads + 1
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    if basis is None:
        ov_eigen, ov_notes = ov_eigen_scores(folded)
        notes.extend(ov_notes)
    else:
        ov_eigen = circuits.basis_ov_eigen(folded, basis)
    tick()
    composition = {m: composition_scores(folded, m, progress=tick) for m in MODES}
    # i.i.d. Gaussian Q, K and V factors have identical shapes, hence one baseline for all three
    shared = random_baseline(cfg.d_model, cfg.d_head, "K", samples=baseline_samples, seed=seed)
    baseline = {m: shared for m in MODES}
    result = WeightAnalysis(
        n_layers=cfg.n_layers, n_heads=cfg.n_heads, subdiagonal=None, ov_eigen=ov_eigen,
        composition=composition, baseline=baseline, baseline_samples=baseline_samples,
        token_ids=token_ids, n_positions=n_positions, virtual_k={}, notes=notes, model=folded,
        basis=basis)

    E, P = result._embeddings()
    sub = torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64)
    for l, h in result.heads():
        if P is not None:
            # only the position block is needed for the score; skip the token blocks here
            w = circuits.head_weights(folded, l, h)
            pp = (P @ w["W_Q"]) @ (P @ w["W_K"]).T  # no attn_scale: the per-row z-score ignores it
            score = circuits.subdiagonal_score(pp)
            sub[l, h] = float("nan") if score is None else score
        sources = result.k_sources(l, h, partners)
        if sources:
            result.virtual_k[(l, h)] = [
                {"from": [sl, sh], "label": head_label(sl, sh),
                 "score": float(composition["K"][sl, sh, l, h]) - baseline["K"],
                 "diagonal": circuits.diagonal_score(circuits.virtual_k_block(folded, (sl, sh), (l, h), E))}
                for sl, sh in sources]
        tick()
    result.subdiagonal = sub if P is not None else None
    return result
