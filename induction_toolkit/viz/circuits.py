"""circuitsvis components as HTML that works without a network.

circuitsvis' own ``render`` gives HTML that imports its code from a CDN (``str(html)``), and its
notebook display first probes the network to choose between that and an inlined copy. Here the
JavaScript bundle the circuitsvis wheel ships (``circuitsvis/dist/cdn/iife.js``, MIT licence) is
always inlined: a view is a ``<script>`` with the bundle, then a ``<div>`` and a call to
``CircuitsVis.render`` per component. A page with many components carries the bundle once.
Nothing is fetched, at build time or when the page opens.
"""

import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InductionToolkitError

# Path of the browser bundle inside the circuitsvis package (an IIFE defining `CircuitsVis`).
BUNDLE_PATH = ("dist", "cdn", "iife.js")
_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)


@lru_cache(maxsize=1)
def circuitsvis_bundle() -> str:
    """The circuitsvis browser bundle, made safe to inline in a ``<script>`` element."""
    try:
        text = resources.files("circuitsvis").joinpath(*BUNDLE_PATH).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError) as exc:
        raise InductionToolkitError(
            "circuitsvis' JavaScript bundle (circuitsvis/dist/cdn/iife.js) is not installed; "
            "reinstall circuitsvis from its wheel") from exc
    return script_safe(text)


def circuitsvis_version() -> str:
    """The installed circuitsvis version string, or ``"unknown"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("circuitsvis")
    except PackageNotFoundError:
        return "unknown"


def script_safe(js: str) -> str:
    """JavaScript that cannot end its inline ``<script>`` element early.

    ``</script`` closes the element whatever the JavaScript around it means; inside the string
    literals where it occurs, ``<\\/script`` is the same text to JavaScript.
    """
    return _SCRIPT_END.sub(r"<\\/\1", js)


def json_script_safe(text: str) -> str:
    """JSON (all ``<`` inside strings) escaped so no sequence can close or comment its script."""
    return text.replace("<", "\\u003c")


def bundle_script() -> str:
    """A ``<script>`` element inlining the circuitsvis bundle, tagged with its version."""
    return f'<script data-circuitsvis-bundle="{circuitsvis_version()}">\n{circuitsvis_bundle()}\n</script>'


def _json_props(props: dict[str, Any]) -> str:
    return json_script_safe(json.dumps(props, allow_nan=False, separators=(",", ":")))


@dataclass
class CircuitsView:
    """One circuitsvis React component with its props; displays itself in Jupyter, offline.

    ``component`` is a name exported by the bundle (``AttentionHeads``, ``AttentionPattern``,
    ``ColoredTokens`` …); ``props`` are JSON-able (tensors converted by the caller).
    """

    component: str
    props: dict[str, Any]
    title: str | None = None
    caption: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def element_id(self) -> str:
        """A deterministic HTML element id, the same for the same component and props."""
        # Deterministic, so the same view renders to the same bytes; unique per component+props.
        digest = hashlib.sha1((self.component + _json_props(self.props)).encode()).hexdigest()
        return f"circuitsvis-{digest[:12]}"

    def fragment(self, element_id: str | None = None) -> str:
        """The ``<div>`` and render call; the page must already hold :func:`bundle_script`."""
        eid = element_id or self.element_id
        head = f"<h4>{html.escape(self.title)}</h4>\n" if self.title else ""
        cap = f'<p class="caption">{html.escape(self.caption)}</p>\n' if self.caption else ""
        return (f'{head}<div id="{eid}" class="circuitsvis" data-component="{self.component}" '
                f'style="margin: 15px 0;"></div>\n{cap}'
                f'<script>CircuitsVis.render("{eid}", CircuitsVis.{self.component}, '
                f"{_json_props(self.props)});</script>")

    def __repr__(self) -> str:
        return f"<CircuitsView {self.component}{': ' + self.title if self.title else ''} {self.info}>"

    def _repr_html_(self) -> str:
        # Self-contained on purpose: a saved notebook must still render when reopened offline.
        return bundle_script() + "\n" + self.fragment()

    def __html__(self) -> str:
        return self._repr_html_()

    def to_html(self) -> str:
        """A complete standalone HTML document."""
        title = html.escape(self.title or self.component)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                f"</head>\n<body>\n{self._repr_html_()}\n</body></html>\n")

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path`` atomically; returns the path."""
        from ..atomic import atomic_write_text

        path = Path(path)
        atomic_write_text(path, self.to_html())
        return path
