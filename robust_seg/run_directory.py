"""Run directories are append-only records.

Hydra creates the run directory before the job starts; it no longer writes ``.hydra/`` or the log file there
(``hydra.output_subdir: null`` and the console-only ``hydra/job_logging=robust_seg``). This module does both, and
only once the command's inputs are checked (:meth:`RunDirectory.accept`): a refused command leaves an existing
run directory byte-identical, and a new directory that a failed command leaves empty (or holding nothing but
its own record) is removed. ``.hydra/config.yaml`` and ``overrides.yaml`` are written when the directory is new,
never rewritten by a later command (a resume appends to the log only).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from robust_seg.provenance import command_overrides
from robust_seg.reporting.files import atomic_write_text

RECORD = ".hydra"
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
        """Stop logging here; remove a directory this command created and left without results (a failed command,
        or a process that never wrote, e.g. a non-zero rank's own time-stamped directory)."""
        self.detach_log()
        if not self.fresh or not self.path.exists():
            return
        if not any(self.path.iterdir()) or (failed and not self.multirun and not self.holds_results()):
            shutil.rmtree(self.path, ignore_errors=True)
