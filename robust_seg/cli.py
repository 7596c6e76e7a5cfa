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


def report_user_errors(job: Callable[[], T]) -> T:
    """Run ``job``; an input error prints ``error: <one line>`` on stderr and exits with status 2."""
    try:
        return job()
    except user_error_types() as error:
        logging.getLogger("robust_seg").debug("user error", exc_info=True)
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
