"""Figures of the weight views: one per layer laid out like Musat et al.'s Figure 2, and an HTML page.

Each head gets a 2×2 block image of its QK circuit, ``[E; P] W_Q W_Kᵀ [E; P]ᵀ`` (top-left
token–token, top-right query token × key position, bottom-left query position × key token,
bottom-right position–position; rows are queries, columns keys). The cells are direct-path
attention logits; in a LayerNorm model the softmax sees them multiplied by each query's and key's
input-dependent ``1/‖x‖``, which no weight holds. Beneath the blocks, a strip: the OV circuit
``E W_V W_O W_U`` and, for heads in layer ≥ 1, the virtual K-composition token–token block through
each of its strongest earlier sources. Every block has its own symmetric colour scale (red
positive, blue negative), since token and position blocks live on different scales.

Figures are built on ``matplotlib.figure.Figure`` directly, never pyplot: no global figure state,
no display backend, nothing to close.
"""

import base64
import html
import io
import math
from collections.abc import Callable
from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..atomic import atomic_write_bytes, atomic_write_text
from ..scores import fmt_score, head_label
from .analysis import WeightAnalysis

_CMAP = "RdBu_r"
_HEAD_WIDTH = 3.4  # inches per head column
_DPI = 100
_MAX_PIXELS = 256


def _downsample(block: torch.Tensor) -> torch.Tensor:
    """Average-pool to at most ``_MAX_PIXELS`` per side: a panel is ~250 px wide anyway, and
    drawing GPT-2's 1024² position block per head at full size takes seconds each."""
    h, w = block.shape
    if max(h, w) <= _MAX_PIXELS:
        return block
    pooled = torch.nn.functional.adaptive_avg_pool2d(block[None, None].float(),
                                                     (min(h, _MAX_PIXELS), min(w, _MAX_PIXELS)))
    return pooled[0, 0]


def _show(ax, block: torch.Tensor, title: str | None = None, fontsize: float = 6,
          aspect: str = "auto") -> None:
    data = _downsample(block.detach().to("cpu", torch.float32)).numpy()
    vmax = float(abs(data).max()) if data.size else 0.0
    vmax = vmax if vmax > 0 else 1.0
    ax.imshow(data, cmap=_CMAP, vmin=-vmax, vmax=vmax, aspect=aspect, interpolation="antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def _draw_head(fig: Figure, spec, analysis: WeightAnalysis, layer: int, head: int, partners: int) -> None:
    sources = [tuple(v["from"]) for v in analysis.virtual_k.get((layer, head), [])][:partners]
    outer = spec.subgridspec(2, 1, height_ratios=[3, 1.3], hspace=0.3)
    blocks = analysis.qk_blocks(layer, head)
    n_tok = blocks["tt"].shape[0]
    label = head_label(layer, head)
    if "pp" in blocks:
        n_pos = blocks["pp"].shape[0]
        grid = outer[0].subgridspec(2, 2, width_ratios=[n_tok, n_pos], height_ratios=[n_tok, n_pos],
                                    wspace=0.04, hspace=0.04)
        axes = {key: fig.add_subplot(grid[i, j]) for key, (i, j) in
                {"tt": (0, 0), "tp": (0, 1), "pt": (1, 0), "pp": (1, 1)}.items()}
        for key, ax in axes.items():
            _show(ax, blocks[key])
        axes["tt"].set_ylabel("query tok", fontsize=6)
        axes["pt"].set_ylabel("query pos", fontsize=6)
        axes["pt"].set_xlabel("key tok", fontsize=6)
        axes["pp"].set_xlabel("key pos", fontsize=6)
        sub = analysis.subdiagonal[layer, head] if analysis.subdiagonal is not None else None
        axes["tt"].set_title(f"{label}   sub-diagonal {_sigma(sub)}", fontsize=8, loc="left")
    else:
        ax = fig.add_subplot(outer[0])
        _show(ax, blocks["tt"])
        ax.set_ylabel("query tok", fontsize=6)
        ax.set_xlabel("key tok", fontsize=6)
        ax.set_title(f"{label}   QK token–token (no P: rotary)", fontsize=8, loc="left")
    strip = outer[1].subgridspec(1, 1 + max(partners, 1), wspace=0.15)
    ov = fig.add_subplot(strip[0, 0])
    _show(ov, analysis.ov_block(layer, head), f"OV\neig {_sigma(analysis.ov_eigen[layer, head], '')}",
          aspect="equal")
    ov.set_ylabel("src tok", fontsize=6)
    ov.set_xlabel("logit", fontsize=6)
    diag = {tuple(v["from"]): v["diagonal"] for v in analysis.virtual_k.get((layer, head), [])}
    for k, src in enumerate(sources):
        ax = fig.add_subplot(strip[0, 1 + k])
        _show(ax, analysis.virtual_k_block(src, (layer, head)),
              f"K ← {head_label(*src)}\ndiag {_sigma(diag[src])}", aspect="equal")
        if k == 0:
            ax.set_xlabel("key's moved tok", fontsize=6)


def _sigma(value, unit: str = "σ") -> str:
    """A score for a title: ``+1.2σ`` (``unit`` after it), or "—" when it could not be computed."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    return f"{float(value):+.2f}" if not unit else f"{float(value):+.1f}{unit}"


def layer_figure(analysis: WeightAnalysis, layer: int, *, partners: int | None = None) -> Figure:
    """One layer: a column per head (QK 2×2 block image, then OV and virtual K blocks)."""
    if not 0 <= layer < analysis.n_layers:
        raise ValueError(f"layer must be in [0, {analysis.n_layers}), got {layer}")
    partners = _partners(analysis, partners)
    n = analysis.n_heads
    fig = Figure(figsize=(_HEAD_WIDTH * n, _HEAD_WIDTH * 4 / 3 + 0.4), dpi=_DPI)
    grid = fig.add_gridspec(1, n, wspace=0.25, left=0.03, right=0.99, bottom=0.06, top=0.9)
    for head in range(n):
        _draw_head(fig, grid[0, head], analysis, layer, head, partners if layer > 0 else 0)
    fig.suptitle(f"layer {layer}: QK circuit in token/position bases (rows = queries), "
                 "OV circuit, virtual K-composition", fontsize=9)
    return fig


def head_figure(analysis: WeightAnalysis, layer: int, head: int, *, partners: int | None = None) -> Figure:
    """One head alone, laid out as in ``layer_figure``."""
    if not (0 <= layer < analysis.n_layers and 0 <= head < analysis.n_heads):
        raise ValueError(f"no head L{layer}H{head} in a {analysis.n_layers}×{analysis.n_heads} model")
    fig = Figure(figsize=(_HEAD_WIDTH + 0.6, _HEAD_WIDTH * 4 / 3 + 0.4), dpi=_DPI)
    grid = fig.add_gridspec(1, 1, left=0.1, right=0.97, bottom=0.08, top=0.92)
    _draw_head(fig, grid[0, 0], analysis, layer, head, _partners(analysis, partners) if layer > 0 else 0)
    return fig


def _partners(analysis: WeightAnalysis, partners: int | None) -> int:
    most = max((len(v) for v in analysis.virtual_k.values()), default=0)
    return most if partners is None else min(partners, most)


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes (so files can be written atomically)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def weights_html(analysis: WeightAnalysis, pngs: dict[int, bytes], title: str = "Weight views") -> str:
    """A self-contained page: the per-head table and every layer PNG as a base64 data URI."""
    esc = html.escape
    rows = []
    for r in analysis.head_rows():
        sub = "—" if r["subdiagonal"] is None else f"{r['subdiagonal']:+.2f}"
        cells = [r["label"], sub, fmt_score(r["ov_eigen"], "+.2f")]
        for m in ("q", "k", "v"):
            p = r[f"{m}_partner"]
            cells.append("—" if p is None else f"{'←' if p['direction'] == 'from' else '→'} {p['label']} {p['score']:+.3f}")
        rows.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in ("head", "sub-diagonal (σ)", "OV eigen", "Q partner", "K partner", "V partner"))
    images = "\n".join(
        f'<h2>Layer {layer}</h2>\n<img alt="layer {layer} weight views" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        for layer, png in sorted(pngs.items()))
    notes = "".join(f"<li>{esc(n)}</li>" for n in analysis.notes)
    baseline = ", ".join(f"{m} {v:.4f}" for m, v in analysis.baseline.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}}img{{max-width:100%}}</style>
</head><body>
<h1>{esc(title)}</h1>
<p>Rows of every block are queries, columns keys (sub-diagonal = attend to the previous position).
Sub-diagonal and diagonal scores z-score each row on its own (the softmax ignores a constant added
to a row) and average the z-value at key = query − 1 (or the diagonal) over rows.
In a LayerNorm model the cells omit each token's input-dependent 1/‖x‖ scale.
Composition scores have the mean score of {analysis.baseline_samples} random Gaussian head pairs
subtracted ({esc(baseline)}).</p>
<table><tr>{header}</tr>
{chr(10).join(rows)}
</table>
<ul>{notes}</ul>
{images}
</body></html>
"""


def write_weight_figures(analysis: WeightAnalysis, out_dir: str | Path, *, title: str = "Weight views",
                         partners: int | None = None,
                         progress: Callable[[int, int], None] | None = None) -> dict[str, Path]:
    """Write ``layer_{l}.png`` per layer and ``weights.html`` (all of them embedded) into ``out_dir``."""
    out = Path(out_dir)
    pngs: dict[int, bytes] = {}
    paths: dict[str, Path] = {}
    for layer in range(analysis.n_layers):
        pngs[layer] = figure_png(layer_figure(analysis, layer, partners=partners))
        paths[f"layer_{layer}"] = atomic_write_bytes(out / f"layer_{layer}.png", pngs[layer])
        if progress is not None:
            progress(layer + 1, analysis.n_layers)
    paths["html"] = atomic_write_text(out / "weights.html", weights_html(analysis, pngs, title))
    return paths
