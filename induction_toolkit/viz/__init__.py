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


__all__ = ["CircuitsView", "FigureView", "attention", "circuitsvis_bundle", "scores",
           "scores_figure", "select_heads"]
