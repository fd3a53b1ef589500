"""The app's top-level group: one error handler for every command, and ``induct --help``.

``TopLevelHelp.invoke`` wraps every subcommand: a user-facing failure (``InductionToolkitError``,
``OSError``, Ctrl-C, SIGTERM) becomes one ``error: …`` line on stderr and its exit code (see
``_common.error_exit``); anything else is a bug and keeps its traceback. Being the Typer group's
``cls``, it applies both to the installed ``induct`` and to ``CliRunner().invoke(app, …)``.

The help page is drawn with rich's table and panel only.

Typer's rich help imports ``typer.rich_utils``, which pulls in ``rich.markdown`` (markdown-it)
and ``rich.traceback``: about 60 ms, as long as importing typer and rich themselves. The
top-level page is the one people run most, so it keeps Typer's look (usage, options and commands
panels) without that import; each subcommand's ``--help`` is still Typer's own.
"""

from typing import Any

from typer.core import TyperGroup


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


class TopLevelHelp(TyperGroup):
    """The top-level command group: the CLI's one error handler, and a light ``--help``."""

    def invoke(self, ctx: Any) -> Any:
        """Run the subcommand; a user-facing failure exits with one ``error:`` line.

        SIGTERM is turned into an exception for the command's duration, so it unwinds like
        Ctrl-C (temp files removed, training saves its step first) and exits 143 with one line.
        """
        from ._common import terminate_as_exception

        try:
            with terminate_as_exception():
                return super().invoke(ctx)
        except (Exception, KeyboardInterrupt) as exc:
            from ._common import error_exit

            exit_ = error_exit(exc)
            if exit_ is None:
                raise
            raise exit_ from None

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """Print the top-level help page (usage, options, commands) to stdout."""
        from rich import box
        from rich.panel import Panel
        from rich.table import Table

        from ._common import stdout

        stdout.print()
        stdout.print(f" [bold]Usage:[/bold] {ctx.command_path} [OPTIONS] COMMAND [ARGS]...")
        stdout.print()
        stdout.print(f" {_first_paragraph(self.help)}", markup=False)
        stdout.print()
        for title, rows in (("Options", [("--help", "Show this message and exit.")]),
                            ("Commands", [(name, _first_paragraph(cmd.help))
                                          for name, cmd in self.commands.items()
                                          if not cmd.hidden])):
            table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
            table.add_column(style="bold cyan", no_wrap=True)
            table.add_column(ratio=1)
            for name, text in rows:
                table.add_row(name, text)
            stdout.print(Panel(table, title=title, title_align="left", border_style="dim",
                               box=box.ROUNDED))
