"""The HTML page of a :class:`induction_toolkit.report.Report`: one self-contained file.

Everything the page needs is inside it: CSS, the circuitsvis bundle (inlined once, see
:mod:`.circuits`) and figures as PNG data URIs. It makes no network request when it opens.

Sections, in order: model summary, score table, attention patterns of the top induction and
previous-token heads, causal evidence, weight block views and (for a run directory) training
dynamics. The library's :func:`induction_toolkit.report.build_report` computes and chooses all of
it; each section here is a function of the ``Report`` that only draws what it holds.
"""

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .circuits import CircuitsView, bundle_script, circuitsvis_version
from .figures import FigureView

if TYPE_CHECKING:
    from ..report import Report

Fragment = CircuitsView | FigureView | str


@dataclass
class ReportSection:
    """One titled ``<section>`` of the page: HTML strings and views, in order."""

    key: str
    title: str
    parts: list[Fragment]
    intro: str | None = None


@dataclass
class HtmlReport:
    """The drawn page: sections, what was left out and why, notes, and metadata."""

    title: str
    sections: list[ReportSection]
    omitted: dict[str, str] = field(default_factory=dict)  # section key -> why it is absent
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_html(self) -> str:
        """The whole page as one HTML document (no external reference)."""
        needs_bundle = any(isinstance(p, CircuitsView) for s in self.sections for p in s.parts)
        body = []
        toc = "".join(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>'
                      for s in self.sections)
        body.append(f'<nav><ol>{toc}</ol></nav>')
        for s in self.sections:
            body.append(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>')
            if s.intro:
                body.append(f"<p>{html.escape(s.intro)}</p>")
            for part in s.parts:
                body.append(part if isinstance(part, str) else part.fragment())
            body.append("</section>")
        if self.omitted:
            items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                            for k, v in self.omitted.items())
            body.append(f'<section id="omitted"><h2>Not in this report</h2><ul>{items}</ul></section>')
        if self.notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
            body.append(f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>')
        meta = html.escape(json.dumps(self.meta, sort_keys=True))
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_CSS}</style>\n"
            + (bundle_script() + "\n" if needs_bundle else "")
            + f'</head>\n<body data-report-meta="{meta}">\n<h1>{html.escape(self.title)}</h1>\n'
            + "\n".join(body) + "\n</body>\n</html>\n")

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path`` atomically; returns the path."""
        from ..atomic import atomic_write_text

        return atomic_write_text(path, self.to_html())

    def to_dict(self) -> dict[str, Any]:
        """Title, section keys, omitted sections with why, notes and metadata (JSON-ready)."""
        return {"title": self.title, "sections": [s.key for s in self.sections],
                "omitted": dict(self.omitted), "notes": list(self.notes), **self.meta}


# --- sections ---------------------------------------------------------------------------------

def model_section(report: "Report") -> ReportSection:
    """The model's configuration and where it came from."""
    from ..models import config_summary

    loaded = report.loaded
    info = {**config_summary(loaded.model.cfg), "path": loaded.path, "source": loaded.source,
            "step": loaded.step, "seed": loaded.seed}
    if loaded.task:
        info["task"] = json.dumps(loaded.task, sort_keys=True)
    return ReportSection("model", "Model", [_kv_table(info)])


def scores_section(report: "Report") -> ReportSection:
    """Every head's scores, induction and previous-token heads highlighted, and their heatmaps."""
    from ..scores import HEAD_KINDS, fmt_score
    from .figures import scores_figure

    s = report.scores
    induction = {(l, h) for l, h, _ in s.induction_heads()}
    previous = {(l, h) for l, h, _ in s.previous_token_heads()}
    head = "".join(f"<th>{k}</th>" for k in ("head", *HEAD_KINDS))
    rows = []
    for row in s.heads_list():
        key = (row["layer"], row["head"])
        cls = "induction" if key in induction else "previous" if key in previous else ""
        cells = "".join(f"<td>{fmt_score(row[k])}</td>" for k in HEAD_KINDS)
        rows.append(f'<tr class="{cls}"><td>{row["label"]}</td>{cells}</tr>')
    table = f'<table class="scores"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    d = s.data
    summary = (f"<p><b>{html.escape(s.verdict())}</b></p><p>ICL score {_num(s.icl_score, '+.3f')} "
               f"({s.icl_window_text()}); measured on {d.get('batch')} "
               f"sequences of {d.get('seq_len')} random tokens × {d.get('repeats')} repeats, "
               f"seed {d.get('seed')}. Rows in green: induction heads; blue: previous-token heads.</p>")
    return ReportSection("scores", "Per-head scores", [summary, table, scores_figure(s)])


def attention_section(report: "Report") -> ReportSection:
    """circuitsvis patterns of the heads the report chose (top induction, top previous-token)."""
    from .attention import attention_view

    parts: list[Fragment] = [attention_view(p, scores=report.scores) for p in report.attention]
    intro = (f"Attention patterns on one sequence of {report.options.pattern_seq_len} random "
             "tokens repeated twice (query rows, key columns; click a head to enlarge). An "
             "induction head attends from each token in the second half to the token after its "
             "first occurrence: a stripe one to the right of the repeat diagonal. A previous-token "
             "head draws the sub-diagonal.")
    return ReportSection("attention", "Attention patterns", parts, intro=intro)


def weights_section(report: "Report") -> ReportSection:
    """Per-head weight scores and the block views of the heads the report chose."""
    from ..scores import fmt_score, head_label
    from ..weights.figures import head_figure

    analysis = report.weights.analysis
    rows = []
    for r in analysis.head_rows():
        sub = fmt_score(r["subdiagonal"], "+.2f")
        k = r["k_partner"]
        kp = "—" if k is None else f"{'←' if k['direction'] == 'from' else '→'} {k['label']} {fmt_score(k['score'], '+.3f')}"
        rows.append(f"<tr><td>{r['label']}</td><td>{sub}</td><td>{fmt_score(r['ov_eigen'], '+.2f')}</td>"
                    f"<td>{html.escape(kp)}</td></tr>")
    table = ('<table class="weights"><thead><tr><th>head</th><th>sub-diagonal (σ)</th>'
             "<th>OV eigen</th><th>K-composition partner</th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>")
    figures = [FigureView(head_figure(analysis, l, h), title=f"{head_label(l, h)} (top {why} head)")
               for (l, h), why in report.weights.shown]
    intro = ("Read off the weights alone (Musat et al. 2025 block view): each head's QK circuit "
             "in token and position bases, [E;P]·W_Q·W_Kᵀ·[E;P]ᵀ, rows = queries. A previous-token "
             "head shows a sub-diagonal in the position–position block (its strength in σ in the "
             "table); an induction head matches tokens through an earlier head's OV circuit (the "
             "virtual K-composition block, a diagonal). Composition scores are minus a random "
             "baseline.")
    return ReportSection("weights", "Weight block views", [table, *figures], intro=intro)


_METRIC_TEXT = {"NextTokenLogProb": "the correct token's log-probability",
                "LabelMetric": "the correct label's log-probability (one label per sequence)",
                "NextTokenLogit": "the correct token's logit minus the mean logit"}


def causal_section(report: "Report") -> ReportSection:
    """Ablation and patching tables, their per-head heatmaps, and the chosen path."""
    import torch

    from ..scores import head_label
    from .figures import head_heatmaps

    c = report.causal
    ablation, patching = c.ablation, c.patching
    parts: list[Fragment] = []
    d = ablation.to_dict()
    rows = "".join(
        f"<tr><td>{r['label']}</td><td>{_num(r['loss'], '.3f')}</td>"
        f"<td>{_num(r['delta_loss'], '+.3f')}</td><td>{_num(r['first_half_loss'], '.3f')}</td>"
        f"<td>{_num(r['first_half_delta_loss'], '+.3f')}</td></tr>"
        for r in _by_label(d["heads"], d["ranking"]))
    loss, control = ablation.labels
    tokens = (loss, control) == ("repeated-half loss", "first-half loss")
    if tokens:
        intro = (f"Loss on the repeated half (predictable only in context) and on the first half "
                 f"(a control), {c.seq_len} random tokens × 2 on {c.n_sequences} sequences. "
                 f"Baseline: repeated half {_num(ablation.baseline_loss, '.3f')}, first half "
                 f"{_num(ablation.baseline_first_half_loss, '.3f')}. Ablating the induction head, or "
                 "the previous-token head that feeds it, should raise the repeated-half loss toward "
                 "the first half's; other heads should not.")
    else:  # a task's own sets (analysis_data): name them, and show its extra metrics
        extra = "; ".join(f"{k.replace('_', ' ')} {_num(v, '.3f')} → "
                          + ", ".join(f"{r['label']} {_num(r[k], '.3f')}" for r in d["heads"])
                          for k, v in ablation.baseline_extra.items())
        intro = (f"{html.escape(loss)} (needs the context) and {html.escape(control)} (a control) on "
                 f"{html.escape(c.ablation_description or c.description)}. Baseline: {html.escape(loss)} "
                 f"{_num(ablation.baseline_loss, '.3f')}, {html.escape(control)} "
                 f"{_num(ablation.baseline_first_half_loss, '.3f')}. Unablated → ablated: "
                 f"{html.escape(extra)}.")
    parts.append(
        f"<h4>Zero-ablation, one head at a time</h4><p>{intro}</p>"
        f'<table class="causal"><thead><tr><th>head</th><th>{html.escape(loss)}</th><th>Δ</th>'
        f"<th>{html.escape(control)}</th><th>Δ {'first half' if tokens else html.escape(control)}</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>")
    p = patching.to_dict()
    by_label = {e["label"]: e for e in p["heads"]}
    rows = "".join(f"<tr><td>{i}</td><td>{label}</td><td>{_num(by_label[label]['effect'], '+.3f')}</td>"
                   f"<td>{_num(by_label[label]['patched_metric'], '.3f')}</td></tr>"
                   for i, label in enumerate(p["ranking"], 1))
    parts.append(
        f"<h4>Activation patching (denoising)</h4><p>Each head's output patched from clean "
        f"prompts into {'prompts whose earlier copy is corrupted' if tokens else 'corrupted ones (' + html.escape(c.description) + ')'}; "
        f"metric {patching.metric}: "
        f"{_METRIC_TEXT.get(c.metric_kind, 'see induct patch')}, "
        f"{'over the repeated copy' if tokens else 'at the target'} (clean {_num(patching.clean_metric, '.3f')}, corrupted "
        f"{_num(patching.corrupted_metric, '.3f')}); effect 1 = restores the clean value, 0 = "
        "nothing.</p>"
        '<table class="causal"><thead><tr><th>rank</th><th>head</th><th>effect</th>'
        f"<th>patched {html.escape(patching.metric)}</th></tr></thead><tbody>{rows}</tbody></table>")
    n_layers, n_heads = patching.effects.shape
    delta = torch.tensor([[_nan(ablation.row(l, h)["delta_loss"]) for h in range(n_heads)]
                          for l in range(n_layers)])
    parts.append(head_heatmaps([("Δ repeated-half loss (zero-ablation)", delta),
                                ("patching effect (denoising)", patching.effects)],
                               title="Causal effect per head"))
    choice = c.path
    if choice.ran:
        path = choice.result
        q = path.to_dict()
        rows = "".join(f"<tr><td>{x['input']}</td><td>{_num(x['effect'], '+.3f')}</td>"
                       f"<td>{_num(x['patched_metric'], '.3f')}</td></tr>" for x in q["inputs"])
        parts.append(
            f"<h4>Path patching {head_label(*choice.sender)} → {head_label(*choice.receiver)}</h4>"
            "<p>The top previous-token head's output, corrupted only on its path into the top "
            "induction head's query, key or value input (noising). An induction circuit acts "
            f"through the key (K-composition). Largest effect: <b>{q['dominant']}</b>.</p>"
            '<table class="causal"><thead><tr><th>receiver input</th><th>effect</th>'
            f"<th>patched {html.escape(path.metric)}</th></tr></thead><tbody>{rows}</tbody></table>")
    else:
        parts.append(f"<h4>Path patching</h4><p>{html.escape(choice.reason)}.</p>")
    return ReportSection("causal", "Causal evidence: ablation and patching", parts)


def dynamics_section(report: "Report") -> ReportSection:
    """The run's phase change, onsets and lag, and its training-dynamics figures."""
    from ..run_dir import METRICS_FILENAME
    from . import plot_dynamics

    d = report.dynamics.to_dict()
    pc = d["phase_change"]
    lag = d["lag"]
    ci = "" if lag["ci95"] is None else f" (95% CI {lag['ci95'][0]:+.0f} to {lag['ci95'][1]:+.0f})"
    info = {
        "evaluations": d["n_evals"],
        "phase change (ICL-score derivative)": (
            "— (the ICL score never falls)" if pc["start_step"] is None else
            f"steps {pc['start_step']}–{pc['end_step']}, steepest at {pc['steepest_step']}"),
        "strongest induction head": d["strongest_head"]["label"],
        "induction onset (logistic centre of its prefix-matching)": _num(d["induction_onset_step"]),
        "loss drop (repeated half, midpoint)": _num(d["loss_drop_step"]),
        "lag τ = t_score − t_loss (logistic centres)": f"{_num(lag['steps'], '+.0f')} steps{ci}, "
                                                      f"blog-form R² {_num(lag['r2'], '.3f')}",
    }
    intro = (f"From the run's {METRICS_FILENAME} (log step axis). Olsson et al.: induction heads form "
             "inside the phase change, where the in-context-learning score falls fastest.")
    stages = getattr(report.dynamics, "stages", None)
    if stages:  # saved by `induct stages`: LLC critical points (Hoogland et al. 2024)
        info["stage boundaries (LLC critical points, induct stages)"] = (
            ", ".join(map(str, stages["boundaries"])) or "none")
    views = [_kv_table(info), *plot_dynamics(report.dynamics, report.metrics)]
    if stages:
        from .dynamics_figures import llc_figure

        views.append(FigureView(llc_figure(report.dynamics), title="LLC and developmental stages"))
    return ReportSection("dynamics", "Training dynamics", views, intro=intro)


SectionRenderer = Callable[["Report"], ReportSection]
SECTIONS: dict[str, SectionRenderer] = {
    "model": model_section,
    "scores": scores_section,
    "attention": attention_section,
    "causal": causal_section,
    "weights": weights_section,
    "dynamics": dynamics_section,
}


def render(report: "Report") -> HtmlReport:
    """Draw every section ``report`` holds, in order."""
    meta = {**report.meta, "circuitsvis": circuitsvis_version()}
    return HtmlReport(report.title, [SECTIONS[key](report) for key in report.sections],
                      dict(report.omitted), list(report.notes), meta)


def save(report: "Report", path: str | Path) -> Path:
    """Write ``report`` as one self-contained HTML file (atomically); returns the path."""
    return render(report).save(path)


def _by_label(rows: list[dict[str, Any]], ranking: list[str]) -> list[dict[str, Any]]:
    by_label = {r["label"]: r for r in rows}
    return [by_label[label] for label in ranking]


def _num(value: Any, spec: str = "") -> str:
    """``value`` formatted with ``spec``, or "—" when it could not be computed (None)."""
    return "—" if value is None else format(value, spec)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _kv_table(info: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in info.items())
    return f'<table class="kv">{rows}</table>'


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .9em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
table.kv th, table.kv td { text-align: left; } table.kv th { background: #f6f6f6; }
tr.induction { background: #e3f5e1; font-weight: 600; }
tr.previous { background: #e1eef9; font-weight: 600; }
img.figure { max-width: 100%; }
p.caption { color: #555; font-size: .9em; }
nav ol { columns: 2; }
"""
