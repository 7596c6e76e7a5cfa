"""Run directories are append-only records.

Hydra creates the run directory before the job starts; it no longer writes ``.hydra/`` or the log file there
(``hydra.output_subdir: null`` and the console-only ``hydra/job_logging=robust_seg``). This module does both, and
only once the command's inputs are checked (:meth:`RunDirectory.accept`): a refused command leaves an existing
run directory byte-identical, and a new directory that a failed command leaves empty (or holding nothing but
its own record) is removed. ``.hydra/config.yaml`` and ``overrides.yaml`` are written when the directory is new,
never rewritten by a later command (a resume appends to the log only).

One writer at a time: :meth:`RunDirectory.lock` holds an exclusive ``flock`` on ``<run>/.lock`` (which names the
holder: pid, host, start time) for the whole command; a second command on the same directory is refused with one
line naming the holder. The kernel drops the lock when its process dies, so the lock of a killed run is taken over
(with a warning naming it); the file is removed when the command ends.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import yaml

from robust_seg.run.provenance import command_overrides
from robust_seg.reporting.files import atomic_write_text

RECORD = ".hydra"
LOCK = ".lock"
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def _job_name(default: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().job.name if HydraConfig.initialized() else default


class RunDirectory:
    """A run's directory: ``fresh`` when it held nothing when the command started."""

    def __init__(self, path: str | Path, *, multirun: bool = False, job_name: str = "run", is_main: bool = True):
        self.path = Path(path)
        self.fresh = not self.path.exists() or not any(self.path.iterdir())
        self.multirun = multirun
        self.job_name = _job_name(job_name)
        self.is_main = is_main
        self.accepted = False
        self._handler: logging.Handler | None = None
        self._lock: int | None = None
        self._took_over: str | None = None

    def follow(self, path: Path) -> None:
        """A non-zero rank writes into rank 0's directory ``path`` from now on. Its own directory, which Hydra
        created and time-stamped for it (a second later than rank 0's when their clocks straddle one), is removed
        while it is still empty; the shared directory is never this rank's to remove."""
        if path != self.path and self.fresh:
            with contextlib.suppress(OSError):  # rmdir: only an empty directory
                self.path.rmdir()
        self.path, self.fresh = path, False

    def lock(self) -> None:
        """Become the directory's only writer, or raise ``RunDirectoryBusy`` naming the process that is."""
        from robust_seg.errors import RobustSegError, RunDirectoryBusy

        if not self.is_main or self._lock is not None:
            return
        while True:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                handle = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise RobustSegError(f"cannot write the run directory {self.path}: {error.strerror.lower()} (choose "
                                     "a writable place with hydra.run.dir=DIR or ROBUST_SEG_OUTPUTS)") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(handle)
                os.close(handle)
                self.fresh = False  # the directory is the other process's: never remove it
                raise RunDirectoryBusy(f"{self.path} is being written by {holder}: wait for it to finish, or choose "
                                       "another run_name") from None
            try:  # the holder may have removed the file between our open and our lock: lock the current file
                if os.stat(self.path / LOCK).st_ino == os.fstat(handle).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(handle)
        previous = _read_holder(handle)
        if previous != "another process":  # logged once the run is accepted, into its log too
            self._took_over = previous
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        os.ftruncate(handle, 0)
        os.pwrite(handle, record, 0)
        self._lock = handle

    def unlock(self) -> None:
        if self._lock is None:
            return
        (self.path / LOCK).unlink(missing_ok=True)
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        os.close(self._lock)
        self._lock = None

    @property
    def log_file(self) -> Path:
        return self.path / f"{self.job_name}.log"

    def accept(self, cfg) -> None:
        """The inputs are checked and this directory may be written: record the command (a new directory only)
        and send the run's log lines to ``<job>.log`` (appended to on resume)."""
        if self.accepted or not self.is_main:
            return
        self.accepted = True
        self.path.mkdir(parents=True, exist_ok=True)
        if self.fresh:
            from omegaconf import OmegaConf

            config = OmegaConf.to_yaml(cfg) if OmegaConf.is_config(cfg) else yaml.safe_dump(dict(cfg))
            atomic_write_text(self.path / RECORD / "config.yaml", config)
            atomic_write_text(self.path / RECORD / "overrides.yaml", yaml.safe_dump(command_overrides()))
        self._handler = logging.FileHandler(self.log_file, mode="a", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self._handler.setLevel(logging.INFO)
        logging.getLogger().addHandler(self._handler)
        if logging.getLogger().level > logging.INFO or logging.getLogger().level == logging.NOTSET:
            logging.getLogger().setLevel(logging.INFO)
        if self._took_over:
            logging.getLogger(__name__).warning("taking over the run directory's lock left by %s (that process has "
                                                "ended)", self._took_over)

    def write_to_log(self, text: str) -> None:
        """Write ``text`` (e.g. the results table) into the log file as it is, not echoed on the console."""
        if self._handler is not None:
            self._handler.acquire()
            try:
                self._handler.stream.write(text.rstrip("\n") + "\n")
                self._handler.flush()
            finally:
                self._handler.release()

    def detach_log(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def holds_results(self) -> bool:
        """Whether anything besides the command's own record (``.hydra/``, the log) is in the directory."""
        return self.path.exists() and any(p.name not in (RECORD, self.log_file.name) for p in self.path.iterdir())

    def close(self, failed: bool) -> None:
        """Stop logging here and release the lock; remove a directory this command created and left without
        results (a failed command, or a process that never wrote, e.g. a non-zero rank's own time-stamped
        directory)."""
        self.detach_log()
        self.unlock()
        if not self.fresh or not self.path.exists():
            return
        if not any(self.path.iterdir()) or (failed and not self.multirun and not self.holds_results()):
            shutil.rmtree(self.path, ignore_errors=True)


def _read_holder(handle: int) -> str:
    """``pid P on host H since T`` from a lock file's record, or ``another process`` when it holds none."""
    try:
        record = json.loads(os.pread(handle, 4096, 0).decode() or "{}")
        return f"pid {record['pid']} on host {record['host']} since {record['started']}"
    except (ValueError, KeyError, OSError):
        return "another process"
