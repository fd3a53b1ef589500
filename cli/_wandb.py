"""``--wandb [PROJECT]``: an option whose value may be left out (then the default project).

Typer has no optional-value options, so commands that take ``--wandb`` use ``WandbCommand``,
which reads a bare ``--wandb`` (last, or followed by another option) as
``--wandb=induction-toolkit`` before parsing. Nothing here imports wandb.
"""

from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

DEFAULT_PROJECT = "induction-toolkit"  # same as induction_toolkit.wandb_log.DEFAULT_PROJECT

WandbOpt = Annotated[Optional[str], typer.Option(
    "--wandb", metavar="[PROJECT]",
    help=f"Log every metrics row and the figures to Weights & Biases project PROJECT (default "
         f"{DEFAULT_PROJECT}); WANDB_MODE=offline needs no network. Off by default.")]


def expand_bare_wandb(args: list[str]) -> list[str]:
    """``args`` with a bare ``--wandb`` given the default project."""
    out = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg == "--wandb" and (nxt is None or nxt.startswith("-")):
            out.append(f"--wandb={DEFAULT_PROJECT}")
        else:
            out.append(arg)
    return out


class WandbCommand(TyperCommand):
    """A Typer command whose ``--wandb`` option may be given without a value."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse ``args`` after expanding a bare ``--wandb``."""
        return super().parse_args(ctx, expand_bare_wandb(list(args)))
