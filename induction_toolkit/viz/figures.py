"""matplotlib figures that show inline in Jupyter and embed in HTML as PNG data URIs.

Figures are built on ``matplotlib.figure.Figure`` directly, never through ``pyplot``: no global
backend is switched, no figure is left open, and PNG rendering uses Agg whatever the notebook's
backend is.
"""

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..scores import HeadScores

# Screen-friendly resolution; a report with a dozen figures stays a few MB.
DPI = 110


def new_figure(width: float, height: float, **kwargs: Any) -> "Figure":
    """A constrained-layout matplotlib ``Figure`` of ``width`` × ``height`` inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", **kwargs)


def png_bytes(fig: "Figure", dpi: int = DPI) -> bytes:
    """The figure rendered as PNG bytes at ``dpi`` (same figure, same bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)  # attaches an Agg canvas: PNG without any interactive backend
    # Constrained layout settles on the first draw; lay out once so every PNG is the same.
    fig.draw_without_rendering()
    buf = io.BytesIO()
    # Fixed metadata so the same figure gives the same bytes (matplotlib stamps its version).
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def png_data_uri(data: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,…`` URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@dataclass
class FigureView:
    """A matplotlib figure plus a caption; shows as PNG in Jupyter, ``<img>`` in HTML."""

    figure: "Figure"
    title: str | None = None
    caption: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def png(self) -> bytes:
        """The figure as PNG bytes."""
        return png_bytes(self.figure)

    def data_uri(self) -> str:
        """The figure as a base64 PNG data URI."""
        return png_data_uri(self.png())

    def __repr__(self) -> str:
        w, h = self.figure.get_size_inches()
        return f"<FigureView {self.title or 'figure'} ({w:.1f}×{h:.1f} in)>"

    def _repr_png_(self) -> bytes:
        return self.png()

    def fragment(self) -> str:
        """An HTML fragment: optional title, the figure as an inline ``<img>``, optional caption."""
        import html

        alt = html.escape(self.title or "figure")
        head = f"<h4>{alt}</h4>\n" if self.title else ""
        cap = f'<p class="caption">{html.escape(self.caption)}</p>\n' if self.caption else ""
        return f'{head}<img class="figure" alt="{alt}" src="{self.data_uri()}">\n{cap}'

    def save(self, path: str | Path) -> Path:
        """Write the figure to ``path`` (format from its suffix, PNG by default); returns the path."""
        from ..atomic import atomic_write_bytes

        path = Path(path)
        if path.suffix.lower() == ".png":
            atomic_write_bytes(path, self.png())
        else:
            buf = io.BytesIO()
            self.figure.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=DPI)
            atomic_write_bytes(path, buf.getvalue())
        return path


SCORE_PANELS = (("previous_token", "previous-token"), ("prefix_matching", "prefix-matching"),
                ("duplicate_token", "duplicate-token"), ("copying", "copying"),
                ("ov_eigen", "OV eigen"))


def scores_figure(scores: "HeadScores", kinds: tuple[str, ...] | None = None) -> FigureView:
    """One heatmap per score kind (layer × head), each cell labelled with its value."""
    panels = [(k, t) for k, t in SCORE_PANELS if kinds is None or k in kinds]
    n_layers, n_heads = scores.n_layers, scores.n_heads
    width = max(3.0, 0.6 * n_heads + 1.4)
    fig = new_figure(width * len(panels), max(2.6, 0.55 * n_layers + 1.4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (kind, name) in zip(axes, panels):
        values = scores.kind(kind).detach().float().cpu().numpy()
        signed = kind in ("copying", "ov_eigen")
        im = ax.imshow(values, cmap="RdBu" if signed else "Blues",
                       vmin=-1 if signed else 0, vmax=1, aspect="auto")
        _layer_head_axes(ax, name, n_layers, n_heads)
        if n_layers * n_heads <= 64:
            for (l, h), v in _cells(values):
                dark = abs(v) > 0.6
                ax.text(h, l, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return FigureView(fig, title="Score heatmaps",
                      caption="Layer × head. Induction heads: high prefix-matching and positive "
                              "copying / OV eigen; previous-token heads: high previous-token.")


def _layer_head_axes(ax, title: str, n_layers: int, n_heads: int) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers))


def _cells(values):
    for l in range(values.shape[0]):
        for h in range(values.shape[1]):
            yield (l, h), float(values[l, h])


def head_heatmaps(panels: list[tuple[str, Any]], *, title: str | None = None,
                  caption: str | None = None, signed: bool = True) -> FigureView:
    """Side-by-side layer × head heatmaps of per-head numbers (``[(panel title, values)]``)."""
    first = panels[0][1]
    n_layers, n_heads = first.shape
    width = max(3.2, 0.6 * n_heads + 1.6)
    fig = new_figure(width * len(panels), max(2.6, 0.55 * n_layers + 1.4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, values) in zip(axes, panels):
        v = values.detach().float().cpu().numpy() if hasattr(values, "detach") else values
        lim = float(abs(v).max()) or 1.0
        im = ax.imshow(v, cmap="RdBu_r" if signed else "Blues", vmin=-lim if signed else 0,
                       vmax=lim, aspect="auto")
        _layer_head_axes(ax, name, n_layers, n_heads)
        if n_layers * n_heads <= 64:
            for (l, h), x in _cells(v):
                ax.text(h, l, f"{x:+.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(x) > 0.6 * lim else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return FigureView(fig, title=title, caption=caption)
