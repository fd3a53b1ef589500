"""The ``induct`` app: one module per subcommand, registered here without importing torch."""

import typer

from . import ablate, compare, patch, planted, report, score
from .help import TopLevelHelp
from . import weights as weights_cmd
from . import train as train_cmd
from . import dynamics as dynamics_cmd
from . import reproduce as reproduce_cmd
from . import sweep as sweep_cmd
from ._wandb import WandbCommand
from . import stages as stages_cmd
from .reproduce_musat import GreedyListCommand

app = typer.Typer(
    name="induct",
    help="Train small transformers, watch induction heads form, and collect the evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
    cls=TopLevelHelp,
)

app.command("score")(score.score)
app.command("planted")(planted.planted)
app.command("train", cls=WandbCommand)(train_cmd.train)
app.command("dynamics")(dynamics_cmd.dynamics)
app.command("reproduce", cls=GreedyListCommand)(reproduce_cmd.reproduce)
app.command("compare")(compare.compare)
app.command("report")(report.report)
app.command("weights")(weights_cmd.weights)
app.command("ablate")(ablate.ablate)
app.command("patch")(patch.patch)
app.command("sweep", cls=WandbCommand)(sweep_cmd.sweep)
app.command("stages")(stages_cmd.stages)


if __name__ == "__main__":
    app()
