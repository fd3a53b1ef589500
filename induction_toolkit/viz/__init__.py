"""Views for Jupyter and HTML: circuitsvis that works offline, matplotlib figures as PNG.

In a notebook::

    from induction_toolkit import viz
    viz.attention(model, heads="induction")   # circuitsvis patterns of the top induction heads
    viz.scores(model)                          # per-head score heatmaps

Every view displays itself inline (``_repr_html_`` / ``_repr_png_``), carries everything it needs
(no CDN, no network probe) and has ``.fragment()`` for embedding and ``.save(path)``.
"""

from typing import Any

from .attention import attention, select_heads
from .circuits import CircuitsView, circuitsvis_bundle
from .figures import FigureView, scores_figure


def scores(model_or_scores: Any, **score_kwargs: Any) -> FigureView:
    """Heatmaps of every head's scores; pass a model (scored now) or a ``HeadScores``."""
    from ..scores import HeadScores, score_model

    s = model_or_scores
    if not isinstance(s, HeadScores):
        s = score_model(model_or_scores, **score_kwargs)
    return scores_figure(s)


def blocks(model: Any, layer: int, head: int | None = None, *, analysis: Any = None,
           partners: int | None = None) -> FigureView:
    """Musat et al. block view of a head's weights (a whole layer when ``head`` is None).

    QK circuit in token/position bases as a 2×2 block image (rows = queries), the OV circuit and,
    for later layers, the virtual K-composition blocks (see :mod:`induction_toolkit.weights`).
    Pass ``analysis`` (``weights.analyze_weights(model)``) to reuse one across calls.
    """
    from ..scores import head_label
    from ..weights import analyze_weights
    from ..weights.figures import head_figure, layer_figure

    analysis = analysis if analysis is not None else analyze_weights(model)
    if head is None:
        return FigureView(layer_figure(analysis, layer, partners=partners),
                          title=f"Layer {layer} weight block views")
    return FigureView(head_figure(analysis, layer, head, partners=partners),
                      title=f"{head_label(layer, head)} weight block view")


class Views(list):
    """Several views shown one after another (e.g. the figures of :func:`dynamics`)."""

    def _repr_html_(self) -> str:
        return "\n".join(v.fragment() if hasattr(v, "fragment") else str(v) for v in self)

    def fragment(self) -> str:
        """The views' HTML fragments, one after another."""
        return self._repr_html_()


def dynamics(run_dir: Any, *, sigma: float = 1.0) -> Views:
    """Training dynamics of a run directory: loss, every head's prefix-matching and
    previous-token scores, and the ICL score over steps, with the phase change shaded."""
    from ..dynamics import analyse
    from ..training import read_metrics, read_run_config
    from .dynamics_figures import icl_figure, loss_figure, prefix_matching_figure

    read_run_config(run_dir)
    rows = read_metrics(run_dir)
    dyn = analyse(rows, sigma=sigma)
    return Views([
        FigureView(loss_figure(rows, dyn), title="Loss"),
        FigureView(prefix_matching_figure(rows, dyn), title="Prefix-matching per head"),
        FigureView(prefix_matching_figure(rows, dyn, "previous_token"),
                   title="Previous-token score per head"),
        FigureView(icl_figure(rows, dyn), title="ICL score"),
    ])


__all__ = ["Views", "blocks", "dynamics", "CircuitsView", "FigureView", "attention", "circuitsvis_bundle", "scores",
           "scores_figure", "select_heads"]
