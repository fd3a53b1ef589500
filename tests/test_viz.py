"""Offline circuitsvis views, figures, the HTML report, and the report in headless Chromium."""

import base64
import io
import json
import re
import socket
import urllib.request

import pytest
import torch
from typer.testing import CliRunner

from chromium_cdp import Chromium, find_chromium
from html_refs import external_refs, resource_refs

CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def planted_ckpt(tmp_path_factory, planted):
    from induction_toolkit.checkpoints import save_model

    path = tmp_path_factory.mktemp("planted") / "planted.safetensors"
    save_model(planted.model, path, task=planted.task_dict(), step=7, seed=3)
    return path


@pytest.fixture(scope="module")
def planted_report(planted_ckpt, tmp_path_factory):
    """The report of the planted circuit, written by the CLI (shared by the report tests)."""
    from cli.main import app

    out = tmp_path_factory.mktemp("report") / "sub" / "report.html"
    result = CliRunner().invoke(app, ["report", str(planted_ckpt), "--out", str(out), "--json",
                                      "--device", "cpu", "--batch", "8"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (circuitsvis' own display probes one)."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _props(fragment: str) -> dict:
    m = re.search(r"CircuitsVis\.render\(\"[^\"]+\", CircuitsVis\.\w+, (\{.*\})\);</script>", fragment)
    assert m, fragment[:300]
    return json.loads(m.group(1))


def test_attention_view_selects_the_planted_heads_and_shows_their_patterns(planted, no_network):
    from induction_toolkit import viz
    from induction_toolkit.viz.attention import default_tokens

    from induction_toolkit.scores import score_model

    tokens = default_tokens(planted.model, seq_len=10, repeats=2, bos_token_id=planted.bos_token_id)
    scores = score_model(planted.model, bos_token_id=planted.bos_token_id, batch=16)
    view = viz.attention(planted.model, tokens, heads="induction", top=1, scores=scores,
                         bos_token_id=planted.bos_token_id)
    assert view.info["heads"] == ["L1H2"]  # the planted circuit's induction head
    prev = viz.attention(planted.model, tokens, heads="previous_token", top=1, scores=scores,
                         bos_token_id=planted.bos_token_id)
    assert prev.info["heads"] == ["L0H1"]

    props = _props(view._repr_html_())
    pattern = torch.tensor(props["attention"][0])  # [query, key]
    t = tokens.tolist()
    assert props["tokens"][0] == "BOS" and props["tokens"][1:] == [str(x) for x in t[1:]]
    # Independent of the scorer: in the second copy, the mass on the key right after the query
    # token's earlier occurrence, found from the token ids alone.
    n = len(t)
    second = range(1 + 10, n)
    on_next = [float(pattern[i, j]) for i in second for j in range(1, i + 1) if t[j - 1] == t[i]]
    assert len(on_next) == len(second)
    assert sum(on_next) / len(on_next) > 0.9
    # rows are attention distributions over earlier keys only
    assert torch.allclose(pattern.sum(-1), torch.ones(n), atol=1e-3)
    assert float(pattern.triu(1).abs().max()) == 0.0

    prev_pattern = torch.tensor(_props(prev.fragment())["attention"][0])
    assert float(prev_pattern.diagonal(-1).mean()) > 0.9


def test_view_html_is_offline_and_self_contained(planted, no_network):
    from induction_toolkit import viz

    view = viz.attention(planted.model, heads=[(1, 2), (0, 1)], bos_token_id=planted.bos_token_id)
    doc = view.to_html()
    assert "unpkg" not in doc and "import " not in doc.split("CircuitsVis.render")[-1]
    assert external_refs(doc) == []
    _, tags = resource_refs(doc)
    assert "link" not in tags
    assert tags.count("script") == 2  # the bundle, then the render call
    assert "var CircuitsVis" in doc
    assert view.info["heads"] == ["L1H2", "L0H1"]


def test_token_text_cannot_break_out_of_the_script(planted):
    from induction_toolkit.viz.circuits import CircuitsView

    evil = "</script><script>alert(1)</script><!--"
    view = CircuitsView("ColoredTokens", {"tokens": [evil, "b"], "values": [0.1, 0.2]})
    doc = view.to_html()
    _, tags = resource_refs(doc)
    assert tags.count("script") == 2
    assert _props(view.fragment())["tokens"][0] == evil  # same string once JavaScript parses it


def test_unknown_head_selection_is_a_user_error(planted):
    from induction_toolkit import viz
    from induction_toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown head selection"):
        viz.attention(planted.model, heads="copying")
    with pytest.raises(ConfigError, match="no head L5H0"):
        viz.attention(planted.model, heads=[(5, 0)])


def test_views_draw_results_and_name_the_call_that_makes_them(planted):
    """viz runs no analysis: a view that needs scores or a weight analysis says how to get it."""
    from induction_toolkit import viz
    from induction_toolkit.errors import ConfigError

    with pytest.raises(ConfigError, match="score_model"):
        viz.attention(planted.model, heads="induction")
    with pytest.raises(ConfigError, match="score_model"):
        viz.scores(planted.model)
    with pytest.raises(ConfigError, match="analyze_weights"):
        viz.blocks(planted.model, 1, 2)


def test_scores_figure_is_a_png_with_one_panel_per_score(planted):
    from matplotlib.image import imread

    from induction_toolkit import viz
    from induction_toolkit.scores import score_model

    scores = score_model(planted.model, bos_token_id=planted.bos_token_id, batch=4)
    fig = viz.scores(scores)
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(io.BytesIO(png))
    assert img.shape[1] > 2 * img.shape[0]  # five panels side by side
    assert len(fig.figure.axes) == 10  # five heatmaps and their colour bars
    # the data URI is the same PNG: rendering is deterministic
    assert fig.data_uri() == "data:image/png;base64," + base64.b64encode(png).decode()


def test_cli_report_json_describes_the_file(planted_report):
    data, out = planted_report
    assert data["out"] == str(out) and data["bytes"] == out.stat().st_size
    assert data["sections"] == ["model", "scores", "attention", "causal", "weights"]
    assert data["step"] == 7 and data["model"] == "planted-induction"


def test_report_sections_and_known_heads(planted_report):
    _, out = planted_report
    doc = out.read_text()
    # The planted circuit: L1H2 is the induction head, L0H1 the previous-token head.
    assert re.search(r'<tr class="induction"><td>L1H2</td>', doc)
    assert re.search(r'<tr class="previous"><td>L0H1</td>', doc)
    assert doc.count("var CircuitsVis=") == 1  # bundle inlined once for all views
    assert doc.count('data-component="AttentionHeads"') == 2
    assert "planted-induction" in doc and "step 7" in doc
    weights = doc[doc.index('<section id="weights">'):]
    weights = weights[:weights.index("</section>")]
    # block views of the top previous-token head, then the top induction head
    assert re.findall(r"<h4>(L\dH\d) \(top", weights) == ["L0H1", "L1H2"]
    assert weights.count('src="data:image/png;base64,') == 2


def _section(doc: str, key: str) -> str:
    part = doc[doc.index(f'<section id="{key}">'):]
    return part[:part.index("</section>")]


def test_report_causal_section_shows_the_planted_circuit(planted_report):
    _, out = planted_report
    causal = _section(out.read_text(), "causal")
    tables = re.findall(r"<tbody>(.*?)</tbody>", causal)
    assert len(tables) == 3  # ablation, patching, path patching
    # ablation, largest effect first: only the two circuit heads raise the repeated-half loss
    ablation = re.findall(r"<tr><td>(L\dH\d)</td><td>[\d.]+</td><td>([+-][\d.]+)</td>", tables[0])
    assert {h for h, _ in ablation[:2]} == {"L0H1", "L1H2"}
    assert all(float(d) > 1.0 for _, d in ablation[:2])
    assert all(abs(float(d)) < 0.05 for _, d in ablation[2:])
    # patching: the induction head's output alone restores the clean prediction
    assert re.match(r"<tr><td>1</td><td>L1H2</td><td>\+0\.9\d\d|<tr><td>1</td><td>L1H2</td><td>\+1\.0",
                    tables[1])
    # path patching L0H1 → L1H2 acts through the key: K-composition
    assert "Largest effect: <b>k</b>" in causal


def test_report_has_no_external_references(planted_report):
    _, out = planted_report
    doc = out.read_text()
    assert external_refs(doc) == []
    refs, tags = resource_refs(doc)
    assert "link" not in tags
    assert any(v.startswith("data:image/png;base64,") for _, _, v in refs)
    # no attribute, CSS or module import anywhere points at http(s)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", doc)
    assert not re.search(r"""from\s+["']https?://""", doc)
    assert "unpkg.com" not in doc


def test_cli_report_bad_input_is_one_line(tmp_path):
    from cli.main import app

    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing.safetensors"),
                                      "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


# After the scripts ran: every circuitsvis <div> holds a rendered React tree with canvases, and
# at least one canvas has painted pixels (an empty heatmap would be all transparent).
RENDERED = """(() => {
  const views = [...document.querySelectorAll('div.circuitsvis')];
  if (views.length === 0) return false;
  return views.every(v => v.querySelector('canvas') !== null);
})()"""
STATE = """(() => {
  const views = [...document.querySelectorAll('div.circuitsvis')];
  const painted = [...document.querySelectorAll('div.circuitsvis canvas')].filter(c => {
    if (!c.width || !c.height) return false;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
    return false;
  }).length;
  const imgs = [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, src: i.src.slice(0, 22)}));
  return {
    views: views.length,
    canvases: document.querySelectorAll('div.circuitsvis canvas').length,
    painted,
    text: views.map(v => v.innerText),
    imgs,
  };
})()"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium executable (chromium, chromium-browser, google-chrome) on PATH; "
           ".ci/run installs Debian's 'chromium' package, which failed or was unavailable here")
def test_report_renders_in_headless_chromium(planted_report, tmp_path):
    """Chromium opens the file, circuitsvis renders, nothing errs, nothing is fetched.

    Driven over the DevTools protocol, which records every request the page makes, so "works
    offline" is checked as requests, not only as markup. The screenshot lands in tmp_path.
    """
    _, report_file = planted_report
    browser = Chromium(CHROMIUM, tmp_path / "profile")
    try:
        browser.open(report_file.as_uri())
        assert browser.wait_for(RENDERED), "circuitsvis components did not render"
        state = browser.evaluate(STATE)
        shot = browser.screenshot(tmp_path / "report.png")
        errors = browser.console_errors()
        urls = browser.requested_urls()
    finally:
        browser.close()

    assert state["views"] == 2  # induction heads, previous-token heads
    assert state["canvases"] >= 2 and state["painted"] >= 1, state
    # the planted circuit's heads are the ones on show, named by the component itself
    assert "L1H2" in state["text"][0] and "L0H1" in state["text"][1], state["text"]
    assert state["imgs"] and all(i["ok"] for i in state["imgs"]), state["imgs"]
    assert errors == []
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls
    assert shot.stat().st_size > 10_000


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from induction_toolkit.training import TrainConfig, train

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    train(TrainConfig(preset="attn-only-1l", steps=6, eval_every=2, batch_size=4, device="cpu"),
          run, handle_signals=False)
    return run


def test_dynamics_views_of_a_run(tiny_run):
    from induction_toolkit import viz
    from induction_toolkit.dynamics import analyse
    from induction_toolkit.run_dir import read_metrics

    rows = read_metrics(tiny_run)
    views = viz.plot_dynamics(analyse(rows), rows)
    assert [v.title for v in views] == ["Loss", "Prefix-matching per head",
                                       "Previous-token score per head", "ICL score",
                                       "Lag of the in-context loss behind the score"]
    doc = views._repr_html_()
    assert doc.count('src="data:image/png;base64,') == 5 and external_refs(doc) == []


def test_report_of_a_run_directory_has_dynamics_and_a_file_report_says_why_not(tiny_run,
                                                                                planted_report):
    from induction_toolkit.report import build_report
    from induction_toolkit.viz.report import render

    report = build_report(tiny_run, device="cpu", options=_small_options())
    assert report.to_dict()["sections"] == ["model", "scores", "attention", "causal", "weights",
                                           "dynamics"]
    assert report.meta["step"] == 6  # the run's last checkpoint
    # one layer: no head sits upstream of another, so no path to patch, and the report says so
    path = report.to_dict()["path_patching"]
    assert path["ran"] is False and "not in increasing layers" in path["reason"]
    doc = render(report).to_html()
    assert "not in increasing layers" in _section(doc, "causal")
    dyn = doc[doc.index('<section id="dynamics">'):]
    assert dyn[:dyn.index("</section>")].count('src="data:image/png;base64,') == 5
    assert external_refs(doc) == []
    data, _ = planted_report
    assert "training run" in data["omitted"]["dynamics"]


def test_report_of_the_trained_model_agrees_with_its_scores(trained_2l):
    """Science: the heads a trained 2-layer model's report shows are the ones its scores and its
    training dynamics single out: induction heads in layer 1, fed by a layer-0 previous-token head
    (three computations: the fixture's scores, the report's ranking, the run's dynamics)."""
    from induction_toolkit.scores import head_label
    from induction_toolkit.report import ReportOptions, build_report
    from induction_toolkit.viz.report import render

    report = build_report(trained_2l.run_dir, device="cpu", options=ReportOptions(batch=32))
    induction = {head_label(l, h) for l, h, _ in trained_2l.scores.induction_heads()}
    induction_view, previous_view = report.attention
    assert induction_view.labels[0] in induction
    assert induction_view.labels[0].startswith("L1")
    assert head_label(*trained_2l.previous_token_head) in previous_view.labels
    doc = render(report).to_html()
    dyn = _section(doc, "dynamics")
    strongest = re.search(r"<th>strongest induction head</th><td>(L\dH\d)</td>", dyn).group(1)
    assert strongest in induction
    assert dyn.count('src="data:image/png;base64,') == 5


def _small_options():
    from induction_toolkit.report import ReportOptions

    return ReportOptions(batch=8)
