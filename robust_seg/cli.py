"""Shared plumbing of the Hydra entry points: user errors become one line and a non-zero exit."""
from __future__ import annotations

import logging
import sys
from typing import Callable, TypeVar

from robust_seg.errors import RobustSegError

T = TypeVar("T")
EXIT_USER_ERROR = 2


def user_error_types() -> tuple[type[BaseException], ...]:
    from robust_seg.data.errors import DatasetError
    from robust_seg.models.checkpoints import CheckpointError

    return RobustSegError, DatasetError, CheckpointError


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def report_user_errors(job: Callable[[], T]) -> T:
    """Run ``job``; an input error prints ``error: <one line>`` on stderr and exits with status 2.

    Under ``-m`` the line goes to the job's log and the error is re-raised instead, so that Hydra
    marks this job failed and still runs the rest of the grid (the sweep fails at its end).
    """
    try:
        return job()
    except user_error_types() as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if _in_multirun():
            logging.getLogger("robust_seg").error("error: %s", message)
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
