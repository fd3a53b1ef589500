"""Views for Jupyter and HTML: circuitsvis that works offline, matplotlib figures as PNG.

In a notebook::

    from induction_toolkit import viz
    from induction_toolkit.scores import score_model

    scores = score_model(model)
    viz.scores(scores)                                      # per-head score heatmaps
    viz.attention(model, heads="induction", scores=scores)  # circuitsvis patterns of the top heads

Views draw results the library computed (``HeadScores``, ``WeightAnalysis``, ``Dynamics``, a
``report.Report``); they run no analysis themselves (``tests/test_viz_layering.py``). Every view
displays itself inline (``_repr_html_`` / ``_repr_png_``), carries everything it needs (no CDN, no
network probe) and has ``.fragment()`` for embedding and ``.save(path)``.
"""

from typing import Any

from ..errors import ConfigError
from .attention import attention, attention_view, select_heads
from .circuits import CircuitsView, circuitsvis_bundle
from .figures import FigureView, scores_figure


def scores(scores: Any) -> FigureView:
    """Heatmaps of every head's scores, from a ``HeadScores`` (``scores.score_model(model)``)."""
    from ..scores import HeadScores

    if not isinstance(scores, HeadScores):
        raise ConfigError(f"viz.scores draws a HeadScores, got {type(scores).__name__}: "
                          "score the model first with induction_toolkit.scores.score_model(model)")
    return scores_figure(scores)


def blocks(model: Any, layer: int, head: int | None = None, *, analysis: Any = None,
           partners: int | None = None) -> FigureView:
    """Musat et al. block view of a head's weights (a whole layer when ``head`` is None).

    QK circuit in token/position bases as a 2×2 block image (rows = queries), the OV circuit and,
    for later layers, the virtual K-composition blocks (see :mod:`induction_toolkit.weights`).
    ``analysis`` is ``weights.analyze_weights(model)`` (one serves every call); ``model`` may be
    ``None`` and is only checked against it.
    """
    from ..scores import head_label
    from ..weights.figures import head_figure, layer_figure

    if analysis is None:
        raise ConfigError("viz.blocks draws a WeightAnalysis: pass "
                          "analysis=induction_toolkit.weights.analyze_weights(model)")
    if head is None:
        return FigureView(layer_figure(analysis, layer, partners=partners),
                          title=f"Layer {layer} weight block views")
    return FigureView(head_figure(analysis, layer, head, partners=partners),
                      title=f"{head_label(layer, head)} weight block view")


class Views(list):
    """Several views shown one after another (e.g. the figures of :func:`plot_dynamics`)."""

    def _repr_html_(self) -> str:
        return "\n".join(v.fragment() if hasattr(v, "fragment") else str(v) for v in self)

    def fragment(self) -> str:
        """The views' HTML fragments, one after another."""
        return self._repr_html_()


def plot_dynamics(dynamics: Any, metrics: list[dict[str, Any]]) -> Views:
    """Training-dynamics figures: loss, every head's prefix-matching and previous-token scores,
    the ICL score (log step axis, phase change shaded) and the lag fit of the strongest head.

    ``dynamics`` is ``induction_toolkit.dynamics.analyse(metrics)`` (or ``run_dynamics(run_dir)``),
    ``metrics`` the run's metrics rows it was computed from.
    """
    from .dynamics_figures import icl_figure, lag_figure, loss_figure, prefix_matching_figure

    rows, dyn = metrics, dynamics
    return Views([
        FigureView(loss_figure(rows, dyn), title="Loss"),
        FigureView(prefix_matching_figure(rows, dyn), title="Prefix-matching per head"),
        FigureView(prefix_matching_figure(rows, dyn, "previous_token"),
                   title="Previous-token score per head"),
        FigureView(icl_figure(rows, dyn), title="ICL score"),
        FigureView(lag_figure(rows, dyn), title="Lag of the in-context loss behind the score"),
    ])


__all__ = ["CircuitsView", "FigureView", "Views", "attention", "attention_view", "blocks",
           "circuitsvis_bundle", "plot_dynamics", "scores", "scores_figure", "select_heads"]
