"""Every public definition of the library says what it returns (style: a one-line docstring).

Read off the source with ``ast``, not by importing, so the check is cheap and sees definitions
behind ``TYPE_CHECKING`` or optional imports too. Public = a module-level function or class, or a
method or property of such a class, whose name does not start with ``_`` (dunder methods and
``_private`` helpers are exempt).
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("induction_toolkit", "cli")


def undocumented(source: str) -> list[str]:
    """Qualified names of the public functions, classes and methods in ``source`` with no docstring."""
    missing = []

    def visit(body, prefix):
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                missing.append(f"{prefix}{node.name} (line {node.lineno})")
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(source).body, "")
    return missing


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_definition_has_a_docstring(package):
    missing = [f"{path.relative_to(ROOT)}: {name}"
               for path in _modules(package) for name in undocumented(path.read_text("utf-8"))]
    assert not missing, ("public definitions without a docstring (say what it returns, in which "
                         "units):\n" + "\n".join(missing))


def test_the_checker_finds_what_it_should():
    source = '''
def documented():
    """Yes."""

def bare():
    pass

def _private():
    pass

class Thing:
    def method(self):
        pass

    @property
    def prop(self):
        """Yes."""

    def __repr__(self):
        return ""

    class Inner:
        """Yes."""

        def deep(self): ...
'''
    assert undocumented(source) == ["bare (line 5)", "Thing (line 11)", "Thing.method (line 12)",
                                    "Thing.Inner.deep (line 25)"]


def test_docstrings_cite_files_inside_the_repository():
    # Readers of an installed package or of the docs site cannot open notes outside the
    # repository, and a bare "science.md" leaves them guessing which file is meant.
    offenders = [f"{path.relative_to(ROOT)}:{i}: {cited}"
                 for package in PACKAGES for path in _modules(package)
                 for i, line in enumerate(path.read_text("utf-8").splitlines(), 1)
                 for cited in re.findall(r"[\w./-]*\.md\b", line)
                 if not (cited.startswith("docs/") and (ROOT / cited).is_file())]
    assert not offenders, "cite docs/<page>.md:\n" + "\n".join(offenders)
