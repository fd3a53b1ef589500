"""What every subcommand shares: error reporting, JSON output, consoles, common options.

Nothing here imports torch or TransformerLens, so ``induct --help`` stays instant.
"""

import contextlib
import errno
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

# Options that mean the same in every subcommand, declared once (Typer copies each use).
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when present).")]
ConfigFile = Annotated[Optional[Path], typer.Option(help="JSON file of config fields that supply or override the model's.")]
ModelPath = Annotated[str, typer.Argument(help="Checkpoint file, run directory, or model directory.")]
NHeads = Annotated[Optional[int], typer.Option(help="Attention heads, for a nanoGPT or Hugging Face file whose weights do not show them (docs/checkpoints.md).")]
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


def error_exit(exc: BaseException) -> "typer.Exit | None":
    """For a failure the user can act on, print its one ``error:`` line and return the Exit.

    ``InductionToolkitError`` exits with its ``exit_code`` (2; 3 for a diverged run), an
    ``OSError`` (unwritable or missing ``--out`` parent, full disk) with 2, an interrupt with 130,
    SIGTERM (``Terminated``) with 143.
    Anything else is a bug: returns None so the caller re-raises it with its traceback. The one
    caller is the app's group (``help.TopLevelHelp.invoke``), so every subcommand gets this.
    """
    from induction_toolkit.errors import InductionToolkitError

    if isinstance(exc, KeyboardInterrupt):
        # args: what was kept, when the command says (training: the checkpoint it saved)
        detail = f": {exc.args[0]}" if exc.args else ""
        if isinstance(exc, Terminated):
            return fail(f"terminated (SIGTERM){detail}", 143)
        return fail(f"interrupted{detail}", 130)
    if isinstance(exc, InductionToolkitError):
        return fail(str(exc), exc.exit_code)
    if isinstance(exc, OSError) and exc.errno != errno.EPIPE:  # a closed pipe is click's to handle
        return fail(_os_error_line(exc), 2)
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds (and saves) as Ctrl-C does."""


@contextlib.contextmanager
def terminate_as_exception():
    """While inside, SIGTERM raises ``Terminated`` (main thread only; restored on the way out)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _os_error_line(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' → '.join(names)}: {reason}" if names else reason


def print_json(data: dict) -> None:
    """One JSON document on stdout; refuses NaN/inf, which JSON cannot carry."""
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def model_config(config: Optional[Path], n_heads: Optional[int]):
    """``--config`` with ``--n-heads`` merged in, as ``load_model``'s ``config`` argument."""
    if n_heads is None:
        return config
    from induction_toolkit.checkpoints import with_n_heads

    return with_n_heads(config, n_heads)


def check_scoring_options(seq_len: int, repeats: int, batch: int) -> None:
    """The repeated-token options every scoring command takes: one rule, one message."""
    from induction_toolkit.errors import ConfigError

    for name, value in (("--seq-len", seq_len), ("--batch", batch)):
        if value < 1:
            raise ConfigError(f"{name} must be ≥ 1, got {value}")
    if repeats < 2:
        raise ConfigError(f"--repeats must be ≥ 2, got {repeats}")
