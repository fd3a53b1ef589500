"""What every subcommand shares: error reporting, JSON output, consoles.

Nothing here imports torch or TransformerLens, so ``induct --help`` stays instant.
"""

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

# Options that mean the same in every subcommand, declared once (Typer copies each use).
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when present).")]
ConfigFile = Annotated[Optional[Path], typer.Option(help="JSON file of config fields that supply or override the model's.")]
ModelPath = Annotated[str, typer.Argument(help="Checkpoint file, run directory, or model directory.")]
TokenSeed = Annotated[int, typer.Option(help="Seed of the random tokens.")]
RunStep = Annotated[Optional[int], typer.Option(help="Checkpoint step, for a run directory.")]
SegmentLength = Annotated[int, typer.Option(help="Random tokens per segment (shrunk to fit the context).")]

stdout = Console(highlight=False)
# Progress bars, hints and errors go to stderr so they never pollute parsed stdout.
stderr = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print ``error: message`` on stderr (one line) and return an Exit to raise."""
    first = " ".join(str(message).split())
    stderr.print(f"error: {first}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn the toolkit's user-facing errors into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from induction_toolkit.errors import InductionToolkitError

        try:
            return fn(*args, **kwargs)
        except InductionToolkitError as exc:
            raise fail(str(exc), getattr(exc, "exit_code", 2)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def print_json(data: dict) -> None:
    """One JSON document on stdout; refuses NaN/inf, which JSON cannot carry."""
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def check_scoring_options(seq_len: int, repeats: int, batch: int) -> None:
    """The repeated-token options every scoring command takes: one rule, one message."""
    from induction_toolkit.errors import ConfigError

    for name, value in (("--seq-len", seq_len), ("--batch", batch)):
        if value < 1:
            raise ConfigError(f"{name} must be ≥ 1, got {value}")
    if repeats < 2:
        raise ConfigError(f"--repeats must be ≥ 2, got {repeats}")
