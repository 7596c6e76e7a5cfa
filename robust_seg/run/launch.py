"""``runtime.processes=N``: one command starts N processes on this machine, torchrun's workers without torchrun.

``python -m robust_seg.evaluate runtime.processes=2`` runs the same job as
``torchrun --standalone --nproc_per_node=2 -m robust_seg.evaluate``: rank r evaluates shard r and rank 0 merges
(training: DDP). The launching engine is torchrun's own (``torch.distributed.launcher.api.elastic_launch``: the
same rendezvous, environment and failure handling), with one difference: the workers are *forked* from this
process after it has imported torch, MMSeg and the project, so they start in a fraction of a second instead of
paying the imports again (about 2.5 s of torchrun's launcher plus each worker's imports, on a 2-core CPU).
Each worker then runs the command exactly as a torchrun worker does (its own composition, the same overrides).

Only a command-line override starts processes (the launcher reads it before composing); a config file that sets
``runtime.processes`` is refused by ``check_processes``. Forked workers need a parent that has not initialised
CUDA, which the entry points never do before the launch. Several machines are started by torchrun (``--nnodes``)
or SLURM (configs/hydra/launcher), as before.

A worker ends as a torchrun worker would: a refusal is its one line (handed to the launcher, which prints each
distinct line once), a bug its traceback, and a worker stopped because another failed unwinds and says nothing.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import sys
import tempfile
import traceback
import uuid
from pathlib import Path
from typing import Callable

from robust_seg.config_checks import positive_int
from robust_seg.errors import ConfigError

KEY = "runtime.processes"
ERRORS = "ROBUST_SEG_WORKER_ERRORS"
"""Under ``runtime.processes``: the folder where each worker leaves its one-line error for the launcher, which
prints each distinct line once (every rank refuses a bad config with the same line)."""
_OVERRIDE = re.compile(r"^\+{0,2}runtime\.processes=(.*)$")


def requested_processes(arguments: list[str]) -> int:
    """The process count a command line asks for (the last ``runtime.processes=N``), 1 when none."""
    values = [match.group(1) for match in map(_OVERRIDE.match, arguments) if match]
    if not values:
        return 1
    value = values[-1].strip()
    count = int(value) if value.isdigit() else value
    positive_int(KEY, count)
    return count


def launched() -> bool:
    """Whether this process is already one of several (torchrun, a submitit task, or ``runtime.processes``)."""
    return "WORLD_SIZE" in os.environ


def check_processes(processes: int) -> None:
    """``runtime.processes`` of a composed config agrees with the processes actually running (``ConfigError``)."""
    positive_int(KEY, processes)
    running = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1 and running != processes:
        if running == 1:
            raise ConfigError(f"{KEY}={processes} starts processes only when given on the command line "
                              f"(python -m robust_seg.evaluate {KEY}={processes} ...), not from a config file")
        raise ConfigError(f"{KEY}={processes} but {running} processes were started (torchrun --nproc_per_node): "
                          f"drop {KEY} under torchrun")


def launch_processes(count: int, worker: Callable[[], object]) -> int:
    """Run ``worker()`` in ``count`` forked processes joined as one torch.distributed group (torchrun's elastic
    launch, standalone rendezvous on a free local port); the exit status of the command: 0, or that of the
    first worker that failed. A worker's traceback goes to stderr as it happens; its one-line errors
    (``print_error``) are printed here, each distinct line once."""
    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if torch.cuda.is_initialized():  # pragma: no cover (the entry points never initialise it before the launch)
        raise ConfigError(f"{KEY}: CUDA was initialised before the workers were forked; use torchrun instead")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=count, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          start_method="fork", monitor_interval=0.1)
    for name in ("torch.distributed.elastic", "torch.multiprocessing"):  # a failure is the worker's own output
        logging.getLogger(name).setLevel(logging.CRITICAL)
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryDirectory(prefix="robust_seg-errors-") as errors:
        os.environ[ERRORS] = errors
        try:
            elastic_launch(config, entrypoint=_worker_status)(worker)
        except ChildFailedError as failure:
            codes = [error.exitcode for error in failure.failures.values() if error.exitcode > 0]
            return codes[0] if codes else 1  # (a worker killed by a signal has a negative code)
        finally:
            os.environ.pop(ERRORS, None)
            lines = [path.read_text() for path in sorted(Path(errors).iterdir(), key=lambda p: int(p.name))]
            for line in dict.fromkeys(lines):
                print(f"error: {line}", file=sys.stderr, flush=True)
    return 0


def print_error(message: str) -> None:
    """``error: <message>`` on stderr; a ``runtime.processes`` worker hands it to the launcher instead."""
    errors = os.environ.get(ERRORS)
    if errors and Path(errors).is_dir():
        (Path(errors) / os.environ.get("RANK", "0")).write_text(message)
    else:
        print(f"error: {message}", file=sys.stderr, flush=True)


def _stopped(signum: int, frame) -> None:
    """SIGTERM in a worker: the launcher stops it because another rank failed. It unwinds as a refused command does
    (``run_job`` removes a run directory it created and left without results) and ends without a word."""
    raise SystemExit(128 + signum)


def _worker_status(worker: Callable[[], object]) -> None:
    """One worker: the command as a torchrun worker runs it, ending as that process would: with the status of a
    ``SystemExit``, and with the traceback of a bug on stderr (status 1)."""
    signal.signal(signal.SIGTERM, _stopped)  # the launcher's handlers, inherited through the fork, are not a
    signal.signal(signal.SIGINT, signal.default_int_handler)  # worker's
    status = 0
    try:
        worker()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    except KeyboardInterrupt:
        status = 130
    except BaseException:  # noqa: BLE001 (a bug: its traceback, as an uncaught exception prints it)
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if status:
        os._exit(status)
