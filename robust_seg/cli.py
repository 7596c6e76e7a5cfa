"""Shared plumbing of the Hydra entry points: bad input becomes one line on stderr and a non-zero exit.

Two layers. :func:`run_main` wraps the whole Hydra application: an error of config composition (an unknown
option, a value of the wrong type, a malformed override) is printed as ``error: <one line>`` and exits with
status 2. :func:`run_job` wraps one job: it owns the run directory (:class:`RunDirectory`), turns the project's
input errors (``RobustSegError``) into the same one line, and removes a directory the failed command created.
``HYDRA_FULL_ERROR=1`` shows the full traceback instead. A bug (any other exception) keeps its traceback.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Callable, TypeVar

from robust_seg.errors import RobustSegError

T = TypeVar("T")
EXIT_USER_ERROR = 2
_FULL_ERROR = "HYDRA_FULL_ERROR"
_USER_FULL_ERROR = [os.environ.get(_FULL_ERROR) == "1"]
"""Whether the user asked for full tracebacks (run_main sets HYDRA_FULL_ERROR=1 itself for Hydra's sake)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    return (RobustSegError,)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def _hydra_message(error: BaseException) -> str | None:
    """One line for a Hydra / OmegaConf composition error, None for any other exception."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, AssertionError) and _raised_inside(error, ("/omegaconf/", "/hydra/")):
        # OmegaConf asserts when an override sets a key below a null section, e.g. dataset.synthetic.* on VOC
        return (f"an override does not fit the composed config ({one_line(error)}): it sets a key below a section "
                "that is null here, e.g. dataset.synthetic.* with a real dataset")
    if not isinstance(error, (HydraException, OmegaConfBaseException)):
        return None
    text = str(error).strip()
    if "Available options" in text:  # MissingConfigException: name the choices on the same line
        head, _, options = text.partition("Available options")
        options = options.partition("Config search path")[0]
        choices = [line.strip() for line in options.splitlines()[1:] if line.strip()]
        return f"{head.strip()} (choose from: {', '.join(choices)})"
    line = one_line(error)
    hint = next((l.strip() for l in text.splitlines()[1:] if l.strip().startswith("To append")), None)
    if hint:
        line = f"{line} ({hint[0].lower()}{hint[1:]})"
    override = getattr(error, "override", None)
    if override is not None and str(override) not in line:  # OverrideParseException
        line = f"cannot read the override {override}: {line}"
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OmegaConfBaseException):
        detail = one_line(cause)
        key = re.search(r"full_key: (\S+)", str(cause))
        line = f"{line}: {detail}" + (f" (key {key.group(1)})" if key and key.group(1) not in line else "")
    return line


def _raised_inside(error: BaseException, places: tuple[str, ...]) -> bool:
    """Whether the innermost frame of ``error``'s traceback lies in a file whose path contains one of ``places``."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    return trace is not None and any(place in trace.tb_frame.f_code.co_filename for place in places)


def run_main(hydra_main: Callable[[], T]) -> T:
    """Run a ``@hydra.main`` function; a config composition error is one line and exit status 2."""
    user_full_error = _USER_FULL_ERROR[0] = os.environ.get(_FULL_ERROR) == "1"
    os.environ[_FULL_ERROR] = "1"  # Hydra re-raises instead of printing its own multi-line report
    try:
        return hydra_main()
    except BaseException as error:  # noqa: B036 (SystemExit / KeyboardInterrupt pass through below)
        if isinstance(error, (SystemExit, KeyboardInterrupt)) or user_full_error:
            raise
        message = one_line(error) if isinstance(error, user_error_types()) else _hydra_message(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    finally:
        if not user_full_error:
            os.environ.pop(_FULL_ERROR, None)


def run_job(cfg, job: Callable[..., T], *, job_name: str) -> T:
    """Run ``job(run_directory)`` in Hydra's run directory; an input error prints ``error: <one line>`` on stderr
    and exits with status 2 (nothing in an existing run directory changes; a new one is removed).

    Under ``-m`` the line goes to the job's log and the error is re-raised instead, so that Hydra marks this job
    failed and still runs the rest of the grid (the sweep fails at its end).
    """
    from robust_seg.run_directory import RunDirectory
    from robust_seg.runtime import hydra_run_dir

    multirun = _in_multirun()
    run = RunDirectory(hydra_run_dir(), multirun=multirun, job_name=job_name,
                       is_main=int(os.environ.get("RANK", "0")) == 0)
    failed = True
    try:
        result = job(run)
        failed = False
        return result
    except user_error_types() as error:
        if _USER_FULL_ERROR[0]:
            raise
        message = one_line(error)
        if multirun:
            run.accept(cfg)  # the failed job keeps its record: the table builder shows why its cell is empty
            logging.getLogger("robust_seg").error("error: %s", message)
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    finally:
        run.close(failed)

