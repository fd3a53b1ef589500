"""One self-contained HTML report of a checkpoint or training run.

Everything the page needs is inside it: CSS, the circuitsvis bundle (inlined once, see
:mod:`.circuits`) and figures as PNG data URIs. It makes no network request when it opens.

Sections, in order: model summary, score table, attention patterns of the top induction and
previous-token heads, and, from the analysis modules present in this install, causal evidence,
weight block views and (for a run directory) training dynamics. Each section is a function of
one :class:`ReportContext`, so the report only arranges what the analysis modules compute.
"""

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InductionToolkitError
from .circuits import CircuitsView, bundle_script, circuitsvis_version
from .figures import FigureView

Fragment = CircuitsView | FigureView | str


@dataclass
class ReportOptions:
    """How the report measures things; the defaults follow ``induct score``."""

    seq_len: int = 25
    repeats: int = 4
    batch: int = 32
    seed: int = 0
    top: int = 3  # heads shown per kind in the attention patterns
    pattern_seq_len: int = 12  # a short sequence, so each pattern plot stays readable
    causal_batch: int = 16  # prompt pairs for ablation and patching (induct patch's default)


@dataclass
class ReportContext:
    """What every section may read: the loaded model, its scores, where it came from."""

    loaded: Any  # checkpoints.LoadedModel
    scores: Any  # scores.HeadScores
    options: ReportOptions
    run_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def model(self):
        return self.loaded.model


@dataclass
class ReportSection:
    key: str
    title: str
    parts: list[Fragment]
    intro: str | None = None


@dataclass
class Report:
    title: str
    sections: list[ReportSection]
    omitted: dict[str, str] = field(default_factory=dict)  # section key -> why it is absent
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_html(self) -> str:
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
        from ..atomic import atomic_write_text

        return atomic_write_text(path, self.to_html())

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "sections": [s.key for s in self.sections],
                "omitted": dict(self.omitted), "notes": list(self.notes), **self.meta}


# --- sections ---------------------------------------------------------------------------------

def model_section(ctx: ReportContext) -> ReportSection:
    from ..models import config_summary

    loaded = ctx.loaded
    info = {**config_summary(ctx.model.cfg), "path": loaded.path, "source": loaded.source,
            "step": loaded.step, "seed": loaded.seed}
    if loaded.task:
        info["task"] = json.dumps(loaded.task, sort_keys=True)
    return ReportSection("model", "Model", [_kv_table(info)])


def scores_section(ctx: ReportContext) -> ReportSection:
    from ..scores import HEAD_KINDS

    s = ctx.scores
    induction = {(l, h) for l, h, _ in s.induction_heads()}
    previous = {(l, h) for l, h, _ in s.previous_token_heads()}
    head = "".join(f"<th>{k}</th>" for k in ("head", *HEAD_KINDS))
    rows = []
    for row in s.heads_list():
        key = (row["layer"], row["head"])
        cls = "induction" if key in induction else "previous" if key in previous else ""
        cells = "".join(f"<td>{row[k]:.3f}</td>" for k in HEAD_KINDS)
        rows.append(f'<tr class="{cls}"><td>{row["label"]}</td>{cells}</tr>')
    table = f'<table class="scores"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    d = s.data
    summary = (f"<p><b>{html.escape(s.verdict())}</b></p><p>ICL score {s.icl_score:+.3f} "
               f"(loss at token {s.icl_late} − token {s.icl_early}); measured on {d.get('batch')} "
               f"sequences of {d.get('seq_len')} random tokens × {d.get('repeats')} repeats, "
               f"seed {d.get('seed')}. Rows in green: induction heads; blue: previous-token heads.</p>")
    from .figures import scores_figure

    return ReportSection("scores", "Per-head scores", [summary, table, scores_figure(s)])


def attention_section(ctx: ReportContext) -> ReportSection:
    from .attention import attention, default_tokens

    o = ctx.options
    tokens = default_tokens(ctx.model, seq_len=o.pattern_seq_len, repeats=2,
                            bos_token_id=ctx.loaded.bos_token_id,
                            exclude=ctx.loaded.special_token_ids, seed=o.seed)
    parts: list[Fragment] = []
    for kind, title in (("induction", "Top induction heads (by prefix-matching)"),
                        ("previous_token", "Top previous-token heads")):
        view = attention(ctx.model, tokens, heads=kind, top=o.top, scores=ctx.scores,
                         bos_token_id=ctx.loaded.bos_token_id, title=title)
        parts.append(view)
    intro = (f"Attention patterns on one sequence of {o.pattern_seq_len} random tokens repeated "
             "twice (query rows, key columns; click a head to enlarge). An induction head attends "
             "from each token in the second half to the token after its first occurrence: a "
             "stripe one to the right of the repeat diagonal. A previous-token head draws the "
             "sub-diagonal.")
    return ReportSection("attention", "Attention patterns", parts, intro=intro)


def weights_section(ctx: ReportContext) -> ReportSection:
    from ..scores import head_label
    from ..weights import analyze_weights
    from ..weights.figures import head_figure

    analysis = analyze_weights(ctx.model)
    shown: list[tuple[int, int]] = []
    for kind in ("previous_token", "prefix_matching"):  # the circuit in its causal order
        for l, h, _ in ctx.scores.top_heads(kind, k=1):
            if (l, h) not in shown:
                shown.append((l, h))
    rows = []
    for r in analysis.head_rows():
        sub = "—" if r["subdiagonal"] is None else f"{r['subdiagonal']:+.2f}"
        k = r["k_partner"]
        kp = "—" if k is None else f"{'←' if k['direction'] == 'from' else '→'} {k['label']} {k['score']:+.3f}"
        rows.append(f"<tr><td>{r['label']}</td><td>{sub}</td><td>{r['ov_eigen']:+.2f}</td>"
                    f"<td>{html.escape(kp)}</td></tr>")
    table = ('<table class="weights"><thead><tr><th>head</th><th>sub-diagonal (σ)</th>'
             "<th>OV eigen</th><th>K-composition partner</th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>")
    figures = [FigureView(head_figure(analysis, l, h),
                          title=f"{head_label(l, h)} (top {'previous-token' if i == 0 else 'induction'} head)")
               for i, (l, h) in enumerate(shown)]
    intro = ("Read off the weights alone (Musat et al. 2025 block view): each head's QK circuit "
             "in token and position bases, [E;P]·W_Q·W_Kᵀ·[E;P]ᵀ, rows = queries. A previous-token "
             "head shows a sub-diagonal in the position–position block (its strength in σ in the "
             "table); an induction head matches tokens through an earlier head's OV circuit (the "
             "virtual K-composition block, a diagonal). Composition scores are minus a random "
             "baseline.")
    ctx.notes.extend(f"weights: {n}" for n in analysis.notes)
    return ReportSection("weights", "Weight block views", [table, *figures], intro=intro)


_METRIC_TEXT = {"NextTokenLogProb": "the correct token's log-probability",
                "NextTokenLogit": "the correct token's logit minus the mean logit"}


def causal_section(ctx: ReportContext) -> ReportSection:
    import torch

    from ..causal import ablate_heads, causal_task, make_prompt_pair, patch_heads, path_patch
    from .figures import head_heatmaps

    o, model = ctx.options, ctx.model
    cfg = model.cfg
    task, notes = causal_task(model, seq_len=o.seq_len, repeats=2,
                              bos_token_id=ctx.loaded.bos_token_id,
                              exclude=ctx.loaded.special_token_ids)
    pair = make_prompt_pair(task, o.causal_batch, seed=o.seed)
    ablation = ablate_heads(model, pair.clean, task, method="zero", seed=o.seed)
    patching = patch_heads(model, pair.clean, pair.corrupted, pair.metric)
    parts: list[Fragment] = []
    d = ablation.to_dict()
    rows = "".join(
        f"<tr><td>{r['label']}</td><td>{r['loss']:.3f}</td><td>{r['delta_loss']:+.3f}</td>"
        f"<td>{r['first_half_loss']:.3f}</td><td>{r['first_half_delta_loss']:+.3f}</td></tr>"
        for r in sorted(d["heads"], key=lambda r: -r["delta_loss"]))
    parts.append(
        f"<h4>Zero-ablation, one head at a time</h4><p>Loss on the repeated half (predictable "
        f"only in context) and on the first half (a control), {task.seq_len} random tokens × 2 "
        f"on {pair.clean.shape[0]} sequences. Baseline: repeated half "
        f"{ablation.baseline_loss:.3f}, first half {ablation.baseline_first_half_loss:.3f}. "
        "Ablating the induction head, or the previous-token head that feeds it, should raise the "
        "repeated-half loss toward the first half's; other heads should not.</p>"
        '<table class="causal"><thead><tr><th>head</th><th>repeated-half loss</th><th>Δ</th>'
        f"<th>first-half loss</th><th>Δ first half</th></tr></thead><tbody>{rows}</tbody></table>")
    p = patching.to_dict()
    by_label = {e["label"]: e for e in p["heads"]}
    rows = "".join(f"<tr><td>{i}</td><td>{label}</td><td>{by_label[label]['effect']:+.3f}</td>"
                   f"<td>{by_label[label]['patched_metric']:.3f}</td></tr>"
                   for i, label in enumerate(p["ranking"], 1))
    parts.append(
        f"<h4>Activation patching (denoising)</h4><p>Each head's output patched from clean "
        f"prompts into prompts whose earlier copy is corrupted; metric {patching.metric}: "
        f"{_METRIC_TEXT.get(type(pair.metric).__name__, 'see induct patch')}, over the "
        f"repeated copy (clean {patching.clean_metric:.3f}, corrupted "
        f"{patching.corrupted_metric:.3f}); effect 1 = restores the clean value, 0 = nothing.</p>"
        '<table class="causal"><thead><tr><th>rank</th><th>head</th><th>effect</th>'
        f"<th>patched {html.escape(patching.metric)}</th></tr></thead><tbody>{rows}</tbody></table>")
    delta = torch.tensor([[ablation.row(l, h)["delta_loss"] for h in range(cfg.n_heads)]
                          for l in range(cfg.n_layers)])
    parts.append(head_heatmaps([("Δ repeated-half loss (zero-ablation)", delta),
                                ("patching effect (denoising)", patching.effects)],
                               title="Causal effect per head"))
    (lp, hp, _), (li, hi, _) = (ctx.scores.top_heads("previous_token", k=1)[0],
                                ctx.scores.top_heads("prefix_matching", k=1)[0])
    if lp < li:
        from ..scores import head_label

        path = path_patch(model, pair.clean, pair.corrupted, pair.metric, (lp, hp), (li, hi),
                          direction="noising")
        q = path.to_dict()
        rows = "".join(f"<tr><td>{x['input']}</td><td>{x['effect']:+.3f}</td>"
                       f"<td>{x['patched_metric']:.3f}</td></tr>" for x in q["inputs"])
        parts.append(
            f"<h4>Path patching {head_label(lp, hp)} → {head_label(li, hi)}</h4><p>The top "
            "previous-token head's output, corrupted only on its path into the top induction "
            "head's query, key or value input (noising). An induction circuit acts through the "
            f"key (K-composition). Largest effect: <b>{q['dominant']}</b>.</p>"
            '<table class="causal"><thead><tr><th>receiver input</th><th>effect</th>'
            f"<th>patched {html.escape(path.metric)}</th></tr></thead><tbody>{rows}</tbody></table>")
    ctx.notes.extend(f"causal: {n}" for n in notes + ablation.notes + patching.notes)
    return ReportSection("causal", "Causal evidence: ablation and patching", parts)


def dynamics_section(ctx: ReportContext) -> ReportSection:
    if ctx.run_dir is None:
        raise SectionSkipped("the report is of a checkpoint file, not a training run directory")
    from ..dynamics import analyse
    from ..run_dir import METRICS_FILENAME, read_metrics
    from . import dynamics as dynamics_views

    rows = read_metrics(ctx.run_dir)
    try:
        dyn = analyse(rows)
    except InductionToolkitError as exc:  # too few evaluations: say so instead of failing
        raise SectionSkipped(str(exc)) from None
    d = dyn.to_dict()
    pc = d["phase_change"]
    info = {
        "evaluations": d["n_evals"],
        "phase change (ICL-score derivative)": f"steps {pc['start_step']}–{pc['end_step']}, "
                                               f"steepest at {pc['steepest_step']}",
        "strongest induction head": d["strongest_head"]["label"],
        "induction onset (half its final score)": d["induction_onset_step"],
        "loss drop (repeated half, midpoint)": d["loss_drop_step"],
        "lag τ of loss behind score (blog fit)": f"{d['lag']['steps']:+.0f} steps, "
                                                 f"R² {d['lag']['r2']:.3f}",
    }
    ctx.notes.extend(f"dynamics: {n}" for n in d["notes"])
    intro = (f"From the run's {METRICS_FILENAME} (log step axis). Olsson et al.: induction heads form "
             "inside the phase change, where the in-context-learning score falls fastest.")
    return ReportSection("dynamics", "Training dynamics",
                         [_kv_table(info), *dynamics_views(ctx.run_dir)], intro=intro)


class SectionSkipped(Exception):
    """A section does not apply to this model; the message says why (listed in the report)."""


SectionBuilder = Callable[[ReportContext], ReportSection]
SECTIONS: list[tuple[str, SectionBuilder]] = [
    ("model", model_section),
    ("scores", scores_section),
    ("attention", attention_section),
    ("causal", causal_section),
    ("weights", weights_section),
    ("dynamics", dynamics_section),
]


# --- building -----------------------------------------------------------------------------------

def build_report(source: str | Path, *, options: ReportOptions | None = None,
                 step: int | None = None, config: Any = None, device: str | None = None,
                 on_section: Callable[[str], None] | None = None) -> Report:
    """Load a checkpoint file or run directory and build its report.

    ``on_section(key)`` is called before each section is computed (for progress display).
    """
    from ..checkpoints import load_model
    from ..run_dir import is_run_dir

    loaded = load_model(source, config=config, device=device, step=step)
    run_dir = Path(source) if is_run_dir(source) else None
    return report_for(loaded, run_dir=run_dir, options=options, on_section=on_section)


def report_for(loaded: Any, *, run_dir: str | Path | None = None,
               options: ReportOptions | None = None,
               on_section: Callable[[str], None] | None = None) -> Report:
    """The report of an already loaded model (a ``LoadedModel``)."""
    from ..scores import score_model, scoring_task

    options = options or ReportOptions()
    if on_section:
        on_section("scoring")
    task, notes = scoring_task(loaded.model, seq_len=options.seq_len, repeats=options.repeats,
                               bos_token_id=loaded.bos_token_id, exclude=loaded.special_token_ids)
    scores = score_model(loaded.model, task=task, batch=options.batch, seed=options.seed)
    ctx = ReportContext(loaded, scores, options, Path(run_dir) if run_dir else None,
                        notes=list(loaded.notes) + notes + list(scores.notes))
    sections, omitted = [], {}
    for key, builder in SECTIONS:
        if on_section:
            on_section(key)
        try:
            sections.append(builder(ctx))
        except SectionSkipped as exc:
            omitted[key] = str(exc)
    name = loaded.model.cfg.model_name
    title = f"induction-toolkit report · {name}" + (
        f" · step {loaded.step}" if loaded.step is not None else "")
    meta = {"model": name, "path": str(loaded.path), "step": loaded.step,
            "circuitsvis": circuitsvis_version(), "run_dir": str(run_dir) if run_dir else None}
    return Report(title, sections, omitted, ctx.notes, meta)


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
