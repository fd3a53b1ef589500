"""viz/ draws results; it runs no analysis.

The rule, checked on the source of every ``induction_toolkit/viz/*.py`` with ``ast`` (so imports
inside functions and under ``TYPE_CHECKING`` count too): no viz module imports

- a package that runs experiments on a model or a run: ``induction_toolkit.causal``,
  ``.training``, ``.reproduce``, ``.compare``;
- an analysis entry point: ``scores.score_model``, ``weights.analyze_weights`` (or the module
  ``weights.analysis`` that holds it), ``dynamics.analyse``, ``dynamics.run_dynamics``,
  ``checkpoints.load_model``, ``report.build_report``.

Result types from those modules (``HeadScores``, ``Dynamics``, ``Report``) and pure helpers
(``head_label``, ``fmt_score``, the figure functions of ``weights.figures``) are allowed: they carry
or draw results. The one model computation left in viz is ``viz.attention`` reading attention
patterns through :mod:`induction_toolkit.patterns`, the picture's data rather than an analysis.
The library decides and computes (``induction_toolkit.report.build_report``).
"""

import ast
from pathlib import Path

VIZ = Path(__file__).resolve().parents[1] / "induction_toolkit" / "viz"

BANNED_PACKAGES = ("induction_toolkit.causal", "induction_toolkit.training",
                   "induction_toolkit.reproduce", "induction_toolkit.compare",
                   "induction_toolkit.weights.analysis")
BANNED_NAMES = {
    ("induction_toolkit.scores", "score_model"),
    ("induction_toolkit.weights", "analyze_weights"),
    ("induction_toolkit.dynamics", "analyse"),
    ("induction_toolkit.dynamics", "run_dynamics"),
    ("induction_toolkit.checkpoints", "load_model"),
    ("induction_toolkit.report", "build_report"),
}


def _banned_module(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in BANNED_PACKAGES)


def forbidden_imports(source: str, package: str = "induction_toolkit.viz") -> list[str]:
    """Imports in ``source`` (a module of ``package``) that break the rule, as ``"line: what"``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _banned_module(alias.name):
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[:len(parts) - node.level + 1])  # level 1 = package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                if (_banned_module(base) or _banned_module(f"{base}.{alias.name}")
                        or (base, alias.name) in BANNED_NAMES):
                    found.append((node.lineno, f"from {base} import {alias.name}"))
    return [f"{line}: {what}" for line, what in sorted(found, key=lambda x: x[0])]


def test_no_viz_module_imports_an_analysis_runner():
    files = sorted(VIZ.glob("*.py"))
    assert len(files) >= 6  # __init__, attention, circuits, dynamics_figures, figures, report
    offences = {}
    for path in files:
        bad = forbidden_imports(path.read_text(encoding="utf-8"))
        if bad:
            offences[path.name] = bad
    assert offences == {}


def test_the_rule_catches_what_the_old_report_module_did():
    """The imports of the presentation-layer orchestrator viz/report.py used to be."""
    old = (
        "def causal_section(ctx):\n"
        "    from ..causal import ablate_heads, patch_heads, path_patch\n"
        "def weights_section(ctx):\n"
        "    from ..weights import analyze_weights\n"
        "def dynamics_section(ctx):\n"
        "    from ..dynamics import analyse\n"
        "    from ..training import read_metrics\n"
        "def report_for(loaded):\n"
        "    from ..scores import score_model, scoring_task\n"
        "    import induction_toolkit.causal.patching\n"
    )
    found = forbidden_imports(old)
    assert found == [
        "2: from induction_toolkit.causal import ablate_heads",
        "2: from induction_toolkit.causal import patch_heads",
        "2: from induction_toolkit.causal import path_patch",
        "4: from induction_toolkit.weights import analyze_weights",
        "6: from induction_toolkit.dynamics import analyse",
        "7: from induction_toolkit.training import read_metrics",
        "9: from induction_toolkit.scores import score_model",
        "10: import induction_toolkit.causal.patching",
    ]
    # allowed: result types and drawing helpers
    assert forbidden_imports("from ..scores import HeadScores, head_label\n"
                             "from ..weights.figures import head_figure\n"
                             "from . import plot_dynamics\n") == []
