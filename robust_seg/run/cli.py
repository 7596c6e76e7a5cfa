"""Shared plumbing of the Hydra entry points: bad input becomes one line on stderr and a non-zero exit.

Two layers. :func:`run_main` wraps the whole Hydra application: an error of config composition (an unknown
option, a value of the wrong type, a malformed override) is printed as ``error: <one line>`` and exits with
status 2. :func:`run_job` wraps one job: it owns the run directory (:class:`RunDirectory`), turns the project's
input errors (``RobustSegError``) into the same one line, and removes a directory the failed command created.
``HYDRA_FULL_ERROR=1`` shows the full traceback instead. A bug (any other exception) keeps its traceback.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from robust_seg.errors import EXIT_USER_ERROR, RobustSegError, one_line
from robust_seg.run.collector import freeze_at_exit, resume_after_start_up
from robust_seg.run.launch import launch_processes, launched, print_error, requested_processes

T = TypeVar("T")
_FULL_ERROR = "HYDRA_FULL_ERROR"
_USER_FULL_ERROR = [os.environ.get(_FULL_ERROR) == "1"]
"""Whether the user asked for full tracebacks (run_main sets HYDRA_FULL_ERROR=1 itself for Hydra's sake)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    return (RobustSegError,)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


FS_HINTS = {
    errno.ENOSPC: "the disk is full: free space, then run the same command with resume=true to continue",
    errno.EDQUOT: "the disk quota is exhausted: free space, then run the same command with resume=true",
    errno.EACCES: "permission denied: choose a place this user may write (hydra.run.dir=DIR, ROBUST_SEG_OUTPUTS) "
                  "or give the user access",
    errno.EPERM: "operation not permitted: choose a place this user may write (hydra.run.dir=DIR)",
    errno.EROFS: "the file system is read-only: choose a writable place (hydra.run.dir=DIR, ROBUST_SEG_OUTPUTS)",
    errno.EEXIST: "a file is in the way of the run directory: choose another hydra.run.dir or run_name",
    errno.ENOTDIR: "a file is in the way of the run directory: choose another hydra.run.dir or run_name",
    errno.EISDIR: "a directory is where a file should be: choose another path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter run_name or hydra.run.dir",
}
"""File-system faults (not bugs) that end a command in one line: errno -> what to do."""


def file_system_message(error: BaseException) -> str | None:
    """One line for a file-system fault (``FS_HINTS``), None for any other exception."""
    if not isinstance(error, OSError) or error.errno not in FS_HINTS:
        return None
    where = f" {error.filename}" if error.filename else ""
    return f"cannot write{where}: {FS_HINTS[error.errno]}"


def entry_name() -> str:
    """``evaluate``, ``train`` or ``pretrain``: the running entry point (``python -m robust_seg.X``, its file, or
    the console script ``robust-seg-X``)."""
    name = Path(sys.argv[0]).name
    name = name[:-3] if name.endswith(".py") else name
    return name.rsplit(".", 1)[-1].removeprefix("robust-seg-")


def _entry_schema():
    """The schema the running entry point registered (``robust_seg.run.config.SCHEMAS``), for did-you-mean hints."""
    from robust_seg.run.config import SCHEMAS

    return SCHEMAS.get(entry_name(), SCHEMAS.get("evaluate"))


def _typed_parent(schema, key: str) -> bool:
    """Whether ``key``'s parent is a section with a fixed set of keys (a dataclass), not a free dictionary."""
    from omegaconf import OmegaConf

    parent = key.rpartition(".")[0]
    try:
        node = OmegaConf.select(OmegaConf.structured(schema), parent) if parent else OmegaConf.structured(schema)
        return OmegaConf.is_dict(node) and OmegaConf.get_type(node) not in (dict, None)
    except Exception:  # noqa: BLE001
        return False


def _hydra_message(error: BaseException) -> str | None:
    """One line for a Hydra / OmegaConf composition error, None for any other exception."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    cause = error
    while cause is not None:  # a project check raised inside Hydra (e.g. a resolver): its own line
        if isinstance(cause, user_error_types()):
            return one_line(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, RuntimeError) and "srun" in str(error) and _raised_inside(error, ("/submitit/",)):
        return ("the SLURM launcher needs a SLURM cluster (no srun here): run on the cluster's login node, or drop "
                "hydra/launcher=slurm (hydra/launcher=submitit_local runs the jobs on this machine)")
    mismatch = re.match(r"In '(experiment/[\w/]+)': Could not override '(\w+)'", str(error).strip())
    if mismatch:
        entry = entry_name()
        other = "evaluate" if entry == "train" else "train"
        return (f"{mismatch.group(1).replace('/', '=', 1)} is not an experiment of python -m robust_seg.{entry} "
                f"(it sets the '{mismatch.group(2)}' group, which {entry} has not): run it with python -m "
                f"robust_seg.{other}, or choose one of {entry}'s experiments")
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
        from robust_seg.config_checks import did_you_mean

        missing = re.search(r"Could not find '[\w/]*?/?(\w+)'", head)
        suggestion = did_you_mean(missing.group(1), choices) if missing else ""
        return f"{head.strip()}{suggestion} (choose from: {', '.join(choices)})"
    line = one_line(error)
    hint = next((l.strip() for l in text.splitlines()[1:] if l.strip().startswith("To append")), None)
    unknown = re.match(r"Could not override '([\w.]+)'", line)
    if hint and unknown and _typed_parent(_entry_schema(), unknown.group(1)):
        # Hydra suggests '+key=...', which the schema then refuses: a key it lacks is most often a typo
        from robust_seg.config_checks import similar_key

        return (f"unknown config key {unknown.group(1)}{similar_key(_entry_schema(), unknown.group(1))} for python -m "
                f"robust_seg.{entry_name()}: check its spelling (--help lists the options)")
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


ATTACK_OPTION = re.compile(r"^attack\.options\.[A-Za-z_][\w.]*=")


def attack_options_as_written(arguments: list[str]) -> list[str]:
    """``attack.options.K=V`` -> ``++attack.options.K=V``: an attack option is passed as written, whether or not the
    chosen attack's config declares it (``-m attack=sea,apgd attack.options.iterations=2`` composes: Hydra composes
    a sweep first with the default attack); the attack function's signature then checks it
    (``robust_seg.attacks.registry``: ``not an option of square (options: ...)``)."""
    from robust_seg.run.provenance import WRITTEN_AS

    rewritten = []
    for argument in arguments:
        if ATTACK_OPTION.match(argument):
            WRITTEN_AS[f"++{argument}"] = argument
            argument = f"++{argument}"
        rewritten.append(argument)
    return rewritten


MODE_OVERRIDE = re.compile(r"^\+{0,2}hydra\.mode=")


@contextlib.contextmanager
def mode_from_the_command_line(arguments: list[str]):
    """Hydra composes the whole config once only to read ``hydra.mode``, then again to run (0.4 s each on the
    2-core machine, a third of a failing command's time). No config of this project sets ``hydra.mode``
    (tests/test_config.py checks it), so the mode is the command line's (``-m`` or not) and the first composition
    is skipped, unless the command line sets ``hydra.mode`` itself; Hydra then runs exactly as before (its
    ``get_mode`` gives None for a config without ``hydra.mode``)."""
    from hydra._internal.hydra import Hydra

    original = getattr(Hydra, "get_mode", None)
    if original is None or any(MODE_OVERRIDE.match(argument) for argument in arguments):
        yield
        return
    Hydra.get_mode = lambda self, config_name, overrides: None
    try:
        yield
    finally:
        Hydra.get_mode = original


def run_main(hydra_main: Callable[[], T], launches_processes: bool = False) -> T:
    """Run a ``@hydra.main`` function; a config composition error is one line and exit status 2.

    ``launches_processes`` (evaluate, train): ``runtime.processes=N`` on the command line runs the command in N
    processes (``robust_seg.run.launch``) and exits with their status."""
    resume_after_start_up()  # the collector, paused during the entry module's imports (robust_seg.run.collector)
    freeze_at_exit()
    sys.argv[1:] = attack_options_as_written(sys.argv[1:])
    if launches_processes and not launched():
        try:
            processes = requested_processes(sys.argv[1:])
        except RobustSegError as error:
            print_error(one_line(error))
            sys.exit(EXIT_USER_ERROR)
        if processes > 1:
            sys.exit(launch_processes(processes, lambda: _run_hydra(hydra_main)))
    return _run_hydra(hydra_main)


def _run_hydra(hydra_main: Callable[[], T]) -> T:
    user_full_error = _USER_FULL_ERROR[0] = os.environ.get(_FULL_ERROR) == "1"
    os.environ[_FULL_ERROR] = "1"  # Hydra re-raises instead of printing its own multi-line report
    started = time.time()
    try:
        with mode_from_the_command_line(sys.argv[1:]):
            return hydra_main()
    except BaseException as error:  # noqa: B036 (SystemExit / KeyboardInterrupt pass through below)
        if isinstance(error, (SystemExit, KeyboardInterrupt)) or user_full_error:
            raise
        message = one_line(error) if isinstance(error, user_error_types()) else \
            file_system_message(error) or _hydra_message(error)
        if message is None:
            raise
        remove_refused_sweeps(started)
        print_error(message)
        sys.exit(EXIT_USER_ERROR)
    finally:
        if not user_full_error:
            os.environ.pop(_FULL_ERROR, None)


def remove_refused_sweeps(started: float) -> None:
    """After a refused multirun (``-m``): remove the sweep folders this command created in which no job got past
    its input checks (only ``multirun.yaml`` and job folders holding their record and log)."""
    if not any(arg in ("-m", "--multirun") for arg in sys.argv[1:]):
        return
    given = [arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.startswith("hydra.sweep.dir=")]
    candidates = [Path(given[-1])] if given else [p.parent for p in Path("outputs").glob("*/multirun/*/multirun.yaml")]
    for sweep in candidates:
        record = sweep / "multirun.yaml"
        if not record.is_file() or record.stat().st_mtime < started - 1:
            continue
        jobs = [p for p in sweep.iterdir() if p != record]
        refused = all(job.is_dir() and all(f.name in (".hydra", f"{f.stem}.log") and (f.is_dir() or f.suffix == ".log")
                                           for f in job.iterdir()) for job in jobs)
        if refused:
            import shutil

            shutil.rmtree(sweep, ignore_errors=True)
            with contextlib.suppress(OSError):  # outputs/<entry>/multirun when nothing else is in it
                sweep.parent.rmdir()


def run_job(cfg, job: Callable[..., T], *, job_name: str) -> T:
    """Run ``job(run_directory)`` in Hydra's run directory; an input error prints ``error: <one line>`` on stderr
    and exits with status 2 (nothing in an existing run directory changes; a new one is removed).

    Under ``-m`` the line goes to the job's log and the error is re-raised instead, so that Hydra marks this job
    failed and still runs the rest of the grid (the sweep fails at its end).
    """
    from robust_seg.run.directory import RunDirectory
    from robust_seg.run.runtime import hydra_run_dir

    multirun = _in_multirun()
    run = RunDirectory(hydra_run_dir(), multirun=multirun, job_name=job_name,
                       is_main=int(os.environ.get("RANK", "0")) == 0)
    failed = True
    try:
        run.lock()
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
        print_error(message)
        sys.exit(EXIT_USER_ERROR)
    finally:
        run.close(failed)

