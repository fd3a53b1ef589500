"""The ``induct`` app: one module per subcommand, registered here without importing torch."""

import typer

from . import planted, report, score

app = typer.Typer(
    name="induct",
    help="Train small transformers, watch induction heads form, and collect the evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

app.command("score")(score.score)
app.command("planted")(planted.planted)
app.command("report")(report.report)


if __name__ == "__main__":
    app()
