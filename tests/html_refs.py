"""Find every resource reference in an HTML document, the way a browser's parser sees tags.

Script bodies are raw text to the HTML parser, so code in the inlined circuitsvis bundle that
merely mentions ``href=`` is not a reference; attributes and CSS ``url(...)`` are.
"""

import re
from html.parser import HTMLParser

_CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"@import\s+['\"]([^'\"]+)", re.IGNORECASE)
URL_ATTRS = {"src", "href", "srcset", "poster", "data", "action", "formaction", "xlink:href"}


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in URL_ATTRS and value is not None:
                self.refs.append((tag, name, value.strip()))
            if name == "style" and value:
                self.refs += [(tag, "style url", u.strip()) for u in _CSS_URL.findall(value)]

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.refs += [("style", "url", u.strip()) for u in _CSS_URL.findall(data)]
            self.refs += [("style", "@import", u.strip()) for u in _CSS_IMPORT.findall(data)]


def resource_refs(document: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(every URL-valued attribute or CSS url, every start tag) in document order."""
    parser = _Refs()
    parser.feed(document)
    parser.close()
    return parser.refs, parser.tags


def external_refs(document: str) -> list[tuple[str, str, str]]:
    """References that would leave the file: anything but ``data:`` URIs and ``#fragments``."""
    refs, _ = resource_refs(document)
    return [r for r in refs if not (r[2].startswith("data:") or r[2].startswith("#"))]
