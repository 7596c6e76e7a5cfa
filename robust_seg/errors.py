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
