"""The one exception family for problems a user can fix.

Every user-facing error class lives here, so callers catch one family and the CLI's single
handler (``cli.help.TopLevelHelp.invoke``) turns any of them into a one-line ``error: …`` on
stderr and the class's ``exit_code`` (2; 3 for a diverged run). Any other exception is a bug and
keeps its traceback. This module imports nothing, so every layer (and ``induct --help``) can use
it for free.
"""


class InductionToolkitError(Exception):
    """A user-facing problem: bad input, a file we cannot read, an impossible request."""

    exit_code = 2


class ConfigError(InductionToolkitError):
    """A configuration (preset, override, task, command-line option) is invalid."""


class RunDirError(ConfigError):
    """A path is not a training run directory, or its files are damaged."""


class CheckpointError(InductionToolkitError):
    """A model file or directory could not be read as a model."""


class ModelUnavailableError(CheckpointError):
    """A model name the toolkit knows, but whose files are not on this machine."""


class HeadSpecError(InductionToolkitError):
    """A head or path specification is malformed or outside the model."""


class OutOfMemoryError(InductionToolkitError):
    """Even one sequence at a time does not fit."""


class NonFiniteLossError(InductionToolkitError):
    """Training diverged: the loss became NaN or infinite (the last good checkpoint is kept)."""

    exit_code = 3


__all__ = ["CheckpointError", "ConfigError", "HeadSpecError", "InductionToolkitError",
           "ModelUnavailableError", "NonFiniteLossError", "OutOfMemoryError", "RunDirError"]
