"""User-facing errors: each prints as one line naming the problem and the fix, and exits non-zero."""


class RobustSegError(Exception):
    """Base class of errors caused by input (configs, files, checkpoints), not by bugs."""


class ConfigError(RobustSegError, ValueError):
    """A configuration value is malformed or inconsistent."""


class CheckpointError(RobustSegError, ValueError):
    """A checkpoint is missing, unreadable, corrupt, or does not match the model."""


class StateFileError(RobustSegError):
    """A state file of a run (evaluation state, training checkpoint) is damaged or unreadable."""


class RunDirectoryBusy(RobustSegError):
    """Another process is writing the run directory."""


class NonFiniteLogits(RobustSegError):
    """A model produced NaN or infinite logits (on clean or attacked images, or in a calibration fit)."""


EXIT_USER_ERROR = 2
"""The exit status of a command refused for its input (one line on stderr, no traceback)."""


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when it has none): what a refused command prints."""
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__
