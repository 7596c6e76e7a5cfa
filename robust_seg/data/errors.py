"""Errors raised by the data layer."""
from __future__ import annotations

from robust_seg.errors import RobustSegError


class DatasetError(RobustSegError, ValueError):
    """A dataset configuration or a dataset on disk is unusable."""


class DatasetNotFoundError(DatasetError):
    """A dataset root is missing or does not have the expected on-disk layout.

    The message is one line naming the path and the expected layout.
    """
