"""The report in a real browser: headless Chromium opens the file, circuitsvis renders, nothing errs.

Chromium is Debian's package, installed by ``.ci/run``; the test skips (saying why) only where no
Chromium executable exists. It is driven over the DevTools protocol, which also records every
request the page makes, so "works offline" is checked as requests, not only as markup.
"""

import pytest

from chromium_cdp import Chromium, find_chromium

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium executable (chromium, chromium-browser, google-chrome) on PATH; "
           ".ci/run installs Debian's 'chromium' package, which failed or was unavailable here")

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


@pytest.fixture(scope="module")
def report_file(tmp_path_factory, planted):
    from induction_toolkit.checkpoints import save_model
    from induction_toolkit.viz.report import build_report

    d = tmp_path_factory.mktemp("browser")
    ckpt = save_model(planted.model, d / "planted.safetensors", task=planted.task_dict())
    return build_report(ckpt, device="cpu").save(d / "report.html")


def test_report_renders_in_headless_chromium(report_file, tmp_path):
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
