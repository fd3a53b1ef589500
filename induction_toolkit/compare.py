"""Score several models of any kind the same way and put them side by side.

Each model is loaded through ``checkpoints.load_model`` (toolkit files, runs, state_dicts, Hugging
Face directories, TransformerLens names), scored on repeated random tokens from its own vocabulary
(same segment length, repeats, batch and seed for all), then released before the next one loads,
so comparing a toy model with a pretrained one needs only the larger one's memory.
"""

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_bytes
from .scores import HeadScores, finite, fmt_score, head_label

TOP_K = 3


@dataclass
class ModelComparison:
    """One model's scores plus where it came from."""

    name: str
    path: str
    source: str
    model_name: str | None
    n_layers: int
    n_heads: int
    d_vocab: int
    scores: HeadScores
    step: int | None = None

    @property
    def max_prefix_matching(self) -> float | None:
        """The model's highest prefix-matching score (fraction of attention, in [0, 1]); None when
        no head has one."""
        best = self.scores.top_heads("prefix_matching", k=1)  # skips missing values
        return best[0][2] if best else None

    def top_heads(self, k: int = TOP_K) -> list[dict[str, Any]]:
        """The ``k`` heads with the highest prefix-matching score, best first."""
        out = []
        for layer, head, value in self.scores.top_heads("prefix_matching", k=k):
            out.append({"layer": layer, "head": head, "label": head_label(layer, head),
                        "score": finite(value),
                        "previous_token": finite(self.scores.previous_token[layer, head]),
                        "copying": finite(self.scores.copying[layer, head]),
                        "copying_top1": finite(self.scores.kind("copying_top1")[layer, head])})
        return out

    def to_dict(self) -> dict[str, Any]:
        """This model's provenance, size, top heads and full scores as a JSON-ready dict."""
        full = self.scores.to_dict()
        return {
            "name": self.name,
            "path": self.path,
            "source": self.source,
            "model_name": self.model_name,
            "step": self.step,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "d_vocab": self.d_vocab,
            "max_prefix_matching": self.max_prefix_matching,
            "icl_score": full["icl_score"],
            "top_heads": self.top_heads(),
            **{k: full[k] for k in ("heads", "induction_heads", "previous_token_heads",
                                    "icl_positions", "verdict", "data", "notes")},
        }


@dataclass
class Comparison:
    """Several models' induction scores side by side, plus the settings they were scored with."""

    models: list[ModelComparison]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every model's entry and the shared scoring settings as a JSON-ready dict."""
        return {"models": [m.to_dict() for m in self.models], "settings": dict(self.settings)}

    def to_table(self, title: str | None = None):
        """One row per model: size, its top induction heads, best prefix-matching, ICL score."""
        from rich.table import Table

        table = Table(title=title, header_style="bold", caption=(
            f"top heads by prefix-matching; green: ≥ {_threshold():.1f} (induction head)"))
        table.add_column("model", no_wrap=True)
        table.add_column("source")
        table.add_column("layers×heads", justify="right")
        table.add_column("top heads", no_wrap=True)
        table.add_column("best prefix", justify="right")
        table.add_column("ICL", justify="right")
        for m in self.models:
            tops = "\n".join(
                (f"[bold green]{t['label']} {t['score']:.2f}[/]" if t["score"] >= _threshold()
                 else f"{t['label']} {t['score']:.2f}") for t in m.top_heads())
            table.add_row(_short(m.name), m.source, f"{m.n_layers}×{m.n_heads}", tops,
                          fmt_score(m.max_prefix_matching),
                          fmt_score(finite(m.scores.icl_score), "+.3f"))
        return table

    def figure(self):
        """One heatmap per model (layer × head, prefix-matching, shared 0–1 colour scale); the best
        head is boxed when it is an induction head."""
        from matplotlib.figure import Figure

        n = len(self.models)
        width = sum(max(2.2, 0.35 * m.n_heads + 1.2) for m in self.models) + 1.0
        height = max(2.6, 0.35 * max(m.n_layers for m in self.models) + 1.6)
        fig = Figure(figsize=(min(width, 40), min(height, 30)), layout="constrained")
        axes = fig.subplots(1, n, squeeze=False,
                            width_ratios=[max(2.2, 0.35 * m.n_heads + 1.2) for m in self.models])[0]
        image = None
        for ax, m in zip(axes, self.models):
            data = m.scores.prefix_matching.float().cpu().numpy()
            image = ax.imshow(data, vmin=0, vmax=1, cmap="viridis", aspect="auto",
                              interpolation="nearest")
            ax.set_title(f"{_short(m.name)}\nbest {fmt_score(m.max_prefix_matching, '.2f')}, ICL "
                         f"{fmt_score(finite(m.scores.icl_score), '+.2f')}", fontsize=8)
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
            _ticks(ax.set_xticks, m.n_heads)
            _ticks(ax.set_yticks, m.n_layers)
            for t in m.top_heads(1):
                if t["score"] >= _threshold():  # mark an induction head, not noise
                    ax.add_patch(_box(t["head"], t["layer"]))
        fig.colorbar(image, ax=list(axes), label="prefix-matching score", shrink=0.9)
        return fig

    def write_figure(self, path: str | Path) -> Path:
        """Write the prefix-matching heatmaps to ``path`` (format from its suffix); returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        import io

        fig = self.figure()
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fmt = Path(path).suffix.lstrip(".").lower() or "png"
        fig.savefig(buf, format=fmt, dpi=110, metadata=_fixed_metadata(fmt))
        return atomic_write_bytes(path, buf.getvalue())


def _short(name: str) -> str:
    """A path's last part (the JSON keeps the whole path); model names stay as they are."""
    p = Path(name)
    return p.name if len(p.parts) > 1 and p.name else name


def _fixed_metadata(fmt: str) -> dict | None:
    # same bytes for the same figure: matplotlib stamps its version and a date otherwise
    if fmt == "png":
        return {"Software": None}
    if fmt in ("pdf", "svg"):
        return {"Creator": None, "Date": None} if fmt == "pdf" else {"Date": None}
    return None


def _threshold() -> float:
    from .scores import INDUCTION_THRESHOLD

    return INDUCTION_THRESHOLD


def _ticks(setter: Callable, n: int) -> None:
    step = max(1, n // 12)
    setter(list(range(0, n, step)))


def _box(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5)


def compare_models(specs: list[str], *, seq_len: int = 25, repeats: int = 4, batch: int = 32,
                   seed: int = 0, device: str | None = None, dtype: str | None = None,
                   on_model: Callable[[str], None] | None = None) -> Comparison:
    """Load, score and release each model in ``specs`` in turn."""
    from .batching import score_fitting
    from .checkpoints import load_model
    from .scores import scoring_task

    results = []
    for spec in specs:
        if on_model is not None:
            on_model(spec)
        loaded = load_model(spec, device=device, dtype=dtype)
        model = loaded.model
        task, notes = scoring_task(model, seq_len=seq_len, repeats=repeats,
                                   bos_token_id=loaded.bos_token_id,
                                   exclude=loaded.special_token_ids)
        scores = score_fitting(model, task=task, batch=batch, seed=seed)
        scores.notes[:0] = loaded.notes + notes
        cfg = model.cfg
        results.append(ModelComparison(
            name=str(spec), path=loaded.path, source=loaded.source, model_name=cfg.model_name,
            n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_vocab=cfg.d_vocab, scores=scores,
            step=loaded.step))
        del loaded, model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    settings = {"seq_len": seq_len, "repeats": repeats, "batch": batch, "seed": seed,
                "dtype": dtype or "float32"}
    return Comparison(results, settings)
