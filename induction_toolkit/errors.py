"""The one exception family for problems a user can fix.

The CLI turns these into a one-line ``error: …`` on stderr and exit code 2 (``exit_code`` lets a
subclass ask for another). Any other exception is a bug and keeps its traceback.
"""


class InductionToolkitError(Exception):
    """A user-facing problem: bad input, a file we cannot read, an impossible request."""

    exit_code = 2


class CheckpointError(InductionToolkitError):
    """A model file or directory could not be read as a model."""


class ConfigError(InductionToolkitError):
    """A configuration (preset, override, task) is invalid."""
