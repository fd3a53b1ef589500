"""Strings from a file never become code (issue 19): the report escapes every one of them.

A checkpoint whose model name, task and file name carry ``<script>`` and ``onerror`` payloads is
reported by the CLI, and the page is opened in headless Chromium: no payload runs, none becomes
an element, every one shows as text. (Loading never unpickles code: tests/test_checkpoints.py and
the bad-input matrix; Hugging Face directories asking for trust_remote_code are refused:
tests/test_pretrained.py.)
"""

import json

import pytest
from typer.testing import CliRunner

from chromium_cdp import Chromium, find_chromium
from cli.main import app

pytestmark = pytest.mark.slow  # the report runs every analysis first: seconds
CHROMIUM = find_chromium()
SCRIPT = "<script>window.__pwned = (window.__pwned || []).concat('script')</script>"
ONERROR = "<img src=nowhere.png onerror=\"window.__pwned = (window.__pwned || []).concat('img')\">"
# a file name cannot hold '/', so its payload has no closing tag
FILE_PAYLOAD = "<img src=nowhere.png onerror=window.__pwned=['file']>"


@pytest.fixture(scope="module")
def hostile_report(planted, tmp_path_factory):
    from induction_toolkit.checkpoints import save_model

    folder = tmp_path_factory.mktemp("hostile")
    model = planted.model
    name = model.cfg.model_name
    model.cfg.model_name = SCRIPT + ONERROR
    try:
        ckpt = folder / f"{FILE_PAYLOAD}.safetensors"
        save_model(model, ckpt, task={**planted.task_dict(), "comment": SCRIPT + ONERROR},
                   step=3, extra={"note": SCRIPT})
    finally:
        model.cfg.model_name = name
    out = folder / "report.html"
    result = CliRunner().invoke(app, ["report", str(ckpt), "--out", str(out), "--device", "cpu",
                                      "--batch", "4", "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_the_html_holds_no_unescaped_payload(hostile_report):
    out, data = hostile_report
    page = out.read_text(encoding="utf-8")
    assert data["model"] == SCRIPT + ONERROR  # the file really carried it (JSON keeps it raw)
    for payload in (SCRIPT, ONERROR, FILE_PAYLOAD):
        assert payload not in page
    # ...but the text is there, escaped, for a reader to see
    assert "&lt;script&gt;window.__pwned" in page
    assert "&lt;img src=nowhere.png onerror=window.__pwned=" in page


PAGE_STATE = """(() => ({
  pwned: window.__pwned === undefined ? null : window.__pwned,
  scripts: [...document.scripts].filter(s => s.textContent.includes('__pwned')).length,
  imgs: [...document.images].filter(i => (i.getAttribute('src') || '').includes('nowhere')).length,
  handlers: [...document.querySelectorAll('[onerror]')].length,
  title: document.title,
  text: document.body.innerText.includes("<script>window.__pwned"),
}))()"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable on PATH; .ci/run installs "
                    "Debian's 'chromium' package, which failed or was unavailable here")
def test_no_payload_runs_in_headless_chromium(hostile_report, tmp_path):
    out, _ = hostile_report
    browser = Chromium(CHROMIUM, tmp_path / "profile")
    try:
        browser.open(out.as_uri())
        browser.wait_for("document.readyState === 'complete'")
        state = browser.evaluate(PAGE_STATE)
        urls = browser.requested_urls()
    finally:
        browser.close()
    assert state["pwned"] is None, state
    assert state["scripts"] == 0 and state["imgs"] == 0 and state["handlers"] == 0, state
    assert "<script>" in state["title"] and state["text"], state  # shown as text
    assert not [u for u in urls if "nowhere" in u]
