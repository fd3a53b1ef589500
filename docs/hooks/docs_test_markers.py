"""mkdocs hook: show the ``docs-test`` markers that ``tests/test_docs.py`` reads.

A code block that the documentation test does not run by default carries a marker on the line
before it, with its reason: ``<!-- docs-test: skip: REASON -->`` (never run: needs something an
offline machine does not have) or ``<!-- docs-test: slow: REASON -->`` (run only with
``pytest -m slow``). The marker is an HTML comment in the source; this hook puts the reason on the
page, under the block's heading, so a reader sees which examples are not checked and why.
"""

import re

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*:\s*(.*?)\s*-->\s*$", re.M)
TEXT = {"skip": "Not run by the documentation test: {}.",
        "slow": "Run only by the slow documentation test: {}."}


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace each marker with a one-line visible note; an unknown kind or no reason fails."""
    def render(m: re.Match) -> str:
        kind, reason = m.group(1), m.group(2).rstrip(".")
        if kind not in TEXT or not reason:
            raise PluginError(f"{page.file.src_uri}: bad docs-test marker {m.group(0)!r}: "
                              "use 'skip: REASON' or 'slow: REASON'")
        return f'<p class="docs-test-note"><small><em>{TEXT[kind].format(reason)}</em></small></p>\n'

    return MARKER.sub(render, markdown)
