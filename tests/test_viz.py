"""Offline circuitsvis views, figures and the HTML report (the browser test is separate)."""

import base64
import io
import json
import re
import socket
import urllib.request

import pytest
import torch
from typer.testing import CliRunner

from html_refs import external_refs, resource_refs


@pytest.fixture(scope="module")
def planted_ckpt(tmp_path_factory, planted):
    from induction_toolkit.checkpoints import save_model

    path = tmp_path_factory.mktemp("planted") / "planted.safetensors"
    save_model(planted.model, path, task=planted.task_dict(), step=7, seed=3)
    return path


@pytest.fixture(scope="module")
def planted_report(planted_ckpt):
    from induction_toolkit.viz.report import build_report

    report = build_report(planted_ckpt, device="cpu")
    return report, report.to_html()


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

    tokens = default_tokens(planted.model, seq_len=10, repeats=2, bos_token_id=planted.bos_token_id)
    view = viz.attention(planted.model, tokens, heads="induction", top=1,
                         bos_token_id=planted.bos_token_id)
    assert view.info["heads"] == ["L1H2"]  # the planted circuit's induction head
    prev = viz.attention(planted.model, tokens, heads="previous_token", top=1,
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
    assert fig.data_uri() == "data:image/png;base64," + base64.b64encode(png).decode()
    assert len(fig.figure.axes) == 10  # five heatmaps and their colour bars
    assert fig.png() == png  # deterministic bytes


def test_report_sections_and_known_heads(planted_report):
    report, doc = planted_report
    assert report.to_dict()["sections"][:3] == ["model", "scores", "attention"]
    # The planted circuit: L1H2 is the induction head, L0H1 the previous-token head.
    assert re.search(r'<tr class="induction"><td>L1H2</td>', doc)
    assert re.search(r'<tr class="previous"><td>L0H1</td>', doc)
    assert doc.count("var CircuitsVis=") == 1  # bundle inlined once for all views
    assert doc.count('data-component="AttentionHeads"') == 2
    assert "planted-induction" in doc and "step 7" in doc


def test_report_has_no_external_references(planted_report):
    _, doc = planted_report
    assert external_refs(doc) == []
    refs, tags = resource_refs(doc)
    assert "link" not in tags
    assert any(v.startswith("data:image/png;base64,") for _, _, v in refs)
    # no attribute, CSS or module import anywhere points at http(s)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", doc)
    assert not re.search(r"""from\s+["']https?://""", doc)
    assert "unpkg.com" not in doc


def test_cli_report_writes_one_file(planted_ckpt, tmp_path):
    from cli.main import app

    out = tmp_path / "sub" / "report.html"
    result = CliRunner().invoke(app, ["report", str(planted_ckpt), "--out", str(out), "--json",
                                      "--device", "cpu", "--batch", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["out"] == str(out) and data["bytes"] == out.stat().st_size
    assert data["sections"][:3] == ["model", "scores", "attention"]
    assert external_refs(out.read_text()) == []


def test_cli_report_bad_input_is_one_line(tmp_path):
    from cli.main import app

    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing.safetensors"),
                                      "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()
