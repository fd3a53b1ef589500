"""Rich tables for a sweep: the live one (one row per run) and the final summary."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import SweepResult
    from .runner import RunView

_STYLE = {"done": "green", "skipped": "green", "failed": "red", "running": "cyan",
          "pending": "dim", "interrupted": "yellow"}


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "(base)"


def live_table(rows: "list[RunView]") -> Any:
    """A rich ``Table``: run, state, step, loss, best prefix-matching."""
    from rich.table import Table

    table = Table(title="sweep", title_justify="left", expand=False)
    for name in ("run", "state", "step", "eval loss", "best PM"):
        table.add_column(name, justify="left" if name in ("run", "state") else "right")
    for r in rows:
        step = f"{_fmt(r.step, 'd')}/{_fmt(r.steps, 'd')}"
        table.add_row(_params(r.params), f"[{_STYLE.get(r.state, '')}]{r.state}", step,
                      _fmt(r.loss, ".3f"), _fmt(r.best_prefix_matching, ".2f"))
    return table


class LiveTable:
    """A rich ``Live`` display of ``live_table`` on stderr (a context manager)."""

    def __init__(self):
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(stderr=True, highlight=False), auto_refresh=False,
                          transient=False)

    def __enter__(self) -> "LiveTable":
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)

    def update(self, rows: "list[RunView]") -> None:
        """Redraw with ``rows``."""
        self._live.update(live_table(rows), refresh=True)


def summary_table(result: "SweepResult") -> Any:
    """A rich ``Table`` of a finished sweep: one row per run with its summary numbers."""
    from rich.table import Table

    table = Table(title=f"sweep {result.out} ({result.backend}, {result.wall_s:.1f} s)",
                  title_justify="left")
    for name in ("run", "state", "final loss", "max PM", "ind. layer", "onset step", "error"):
        table.add_column(name, justify="right" if name not in ("run", "state", "error") else "left")
    for r in result.runs:
        s = r.summary
        table.add_row(_params(r.params), f"[{_STYLE.get(r.state, '')}]{r.state}",
                      _fmt(s.get("final_loss"), ".3f"), _fmt(s.get("max_prefix_matching"), ".2f"),
                      _fmt(s.get("induction_layer"), "d"), _fmt(s.get("onset_step"), "d"),
                      r.error or "")
    return table
