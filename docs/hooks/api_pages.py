"""mkdocs hook: one API reference page per public module of ``induction_toolkit``.

Modules are discovered from the package directory (nothing is imported), so a module added to the
package gets its page at the next build; mkdocstrings renders each page from the docstrings, and
``mkdocs build --strict`` fails on a broken cross-reference.
"""

import pkgutil
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "induction_toolkit"


def public_modules() -> list[str]:
    """Names of the package's public top-level modules and subpackages, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules([str(ROOT / PACKAGE)])
                  if not m.name.startswith("_"))


def _page(name: str) -> str:
    return f"api/{name}.md"


def on_config(config):
    """Append an "API reference" section listing every module's page to the nav."""
    pages = [{f"{PACKAGE}.{name}": _page(name)} for name in public_modules()]
    nav = config["nav"]
    at = next((i for i, item in enumerate(nav) if isinstance(item, dict) and "Changelog" in item),
              len(nav))
    nav.insert(at, {"API reference": pages})
    return config


def on_files(files, config):
    """Generate the module pages (they exist only in the built site)."""
    for name in public_modules():
        content = (f"# `{PACKAGE}.{name}`\n\n"
                   f"Generated from the docstrings at build time.\n\n::: {PACKAGE}.{name}\n")
        files.append(File.generated(config, _page(name), content=content))
    return files


_SPHINX_ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|obj|exc):(?=<code>)")


def on_page_content(html: str, page, config, files) -> str:
    """Drop Sphinx roles (``:func:`x```) that some docstrings use: the name stays as code."""
    if not page.file.src_uri.startswith("api/"):
        return html
    return _SPHINX_ROLE.sub("", html)
