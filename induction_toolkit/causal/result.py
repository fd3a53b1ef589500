"""What patching returns: per-head (and per-position) normalised effects, as JSON and a table."""

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float

from ..scores import finite, head_label, rank_heads

DIRECTIONS: tuple[str, ...] = ("denoising", "noising")

# Below this clean−corrupted gap the normalised effects are mostly noise.
SMALL_GAP = 1e-2


def normalised_effect(patched: torch.Tensor, clean: float, corrupted: float,
                      direction: str) -> torch.Tensor:
    """1 = the patch carries the whole clean−corrupted difference, 0 = none of it.

    Denoising (clean into corrupted): ``(patched − corrupted) / (clean − corrupted)``.
    Noising (corrupted into clean): ``(clean − patched) / (clean − corrupted)``.
    """
    gap = clean - corrupted
    if gap == 0:
        return torch.zeros_like(patched)
    return (patched - corrupted) / gap if direction == "denoising" else (clean - patched) / gap


def gap_notes(clean: float, corrupted: float) -> list[str]:
    """A note when the clean–corrupted metric gap is too small for normalised effects to mean much."""
    gap = clean - corrupted
    if abs(gap) < SMALL_GAP:
        return [f"clean and corrupted metrics differ by only {gap:.2g}: the model barely uses the "
                "earlier copy, so normalised effects are mostly noise"]
    return []


@dataclass
class PatchingResult:
    """Every head's effect on the metric when its output is patched (all positions, or per position)."""

    metric: str
    method: str  # exact | attribution
    direction: str
    clean_metric: float
    corrupted_metric: float
    patched: Float[torch.Tensor, "layer head"]  # metric with the patch (estimated for attribution)
    effects: Float[torch.Tensor, "layer head"]
    position_effects: Float[torch.Tensor, "layer pos head"] | None = None
    tokens: list[int] | None = None  # the clean prompt of sequence 0, to label positions
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        """Number of layers in the effect grid."""
        return self.effects.shape[0]

    @property
    def n_heads(self) -> int:
        """Number of heads per layer in the effect grid."""
        return self.effects.shape[1]

    def ranking(self) -> list[tuple[int, int, float]]:
        """Heads by effect, largest first."""
        return rank_heads(self.effects)

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (effects normalised: 1 = the whole clean–corrupted gap)."""
        heads = [{"layer": l, "head": h, "label": head_label(l, h),
                  "effect": finite(float(self.effects[l, h])),
                  "patched_metric": finite(float(self.patched[l, h]))}
                 for l in range(self.n_layers) for h in range(self.n_heads)]
        out: dict[str, Any] = {
            "metric": self.metric, "method": self.method, "direction": self.direction,
            "clean_metric": finite(self.clean_metric),
            "corrupted_metric": finite(self.corrupted_metric),
            "heads": heads,
            "ranking": [head_label(l, h) for l, h, _ in self.ranking()],
        }
        if self.position_effects is not None:
            pe = self.position_effects
            out["positions"] = [{"layer": l, "head": h, "label": head_label(l, h),
                                 "effects": [finite(float(x)) for x in pe[l, :, h]]}
                                for l in range(self.n_layers) for h in range(self.n_heads)]
            if self.tokens is not None:
                out["tokens"] = list(self.tokens)
        out["data"] = self.data
        out["notes"] = list(self.notes)
        return out

    def to_table(self, title: str | None = None):
        """A rich table of heads ranked by normalised effect, with each head's patched metric."""
        from rich.table import Table

        table = Table(title=title, header_style="bold")
        table.add_column("rank", justify="right")
        table.add_column("head")
        table.add_column("effect", justify="right")
        table.add_column(f"patched {self.metric}", justify="right")
        for rank, (l, h, e) in enumerate(self.ranking(), 1):
            style = "bold green" if rank == 1 else None
            table.add_row(str(rank), head_label(l, h), f"{e:+.3f}",
                          f"{float(self.patched[l, h]):.3f}", style=style)
        return table

    def positions_table(self, top: int = 20, title: str | None = None):
        """The ``top`` (head, position) patches by effect."""
        from rich.table import Table

        pe = self.position_effects
        table = Table(title=title, header_style="bold")
        for name, justify in (("head", "left"), ("position", "right"), ("token", "right"),
                              ("effect", "right")):
            table.add_column(name, justify=justify)
        if pe is None:
            return table
        flat = pe.flatten()
        n_pos, n_heads = pe.shape[1], pe.shape[2]
        for i in flat.argsort(descending=True)[:top].tolist():
            l, rest = divmod(i, n_pos * n_heads)
            p, h = divmod(rest, n_heads)
            tok = str(self.tokens[p]) if self.tokens is not None else ""
            table.add_row(head_label(l, h), str(p), tok, f"{float(flat[i]):+.3f}")
        return table
