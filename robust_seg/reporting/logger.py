"""Run logging: Weights & Biases (offline by default) mirrored to plain files by the drivers.

Only rank 0 logs. The W&B key is read by wandb from the environment
(``WANDB_API_KEY``); it never appears in configs or logs.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from robust_seg.errors import ConfigError
from robust_seg.reporting.files import atomic_write_json

STATE_FILE = "wandb_run.json"
"""The run directory's W&B run id and last logged step: a resumed run continues the same W&B run."""

log = logging.getLogger(__name__)


WANDB_DIRS = {"WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data"}
"""W&B's folders outside its run files (by default ~/.cache/wandb and ~/.local/share/wandb), kept under
``<run dir>/wandb/`` unless the user sets them. W&B's service starts with the first run of a process and keeps
the folders it started with (one run per command: the run's own)."""
USER_WANDB_DIRS = {key: os.environ[key] for key in WANDB_DIRS if key in os.environ}


class RunLogger:
    """Thin facade over a W&B run; every method is a no-op without one.

    The W&B run id is kept in ``<run dir>/wandb_run.json`` with the last step logged: a resumed run continues the
    same W&B run (``resume="allow"``), and :meth:`log_missing` logs the epochs a killed run had saved but not yet
    logged, so that the history holds every epoch exactly once.
    """

    def __init__(self, cfg, run_dir: str | Path, config: dict, job_type: str, enabled: bool = True):
        self.run = None
        self.max_images = cfg.log_images
        self.state_file = Path(run_dir) / STATE_FILE
        self.last_step = 0
        if not enabled or cfg.backend == "none" or cfg.mode == "disabled":
            return
        if cfg.backend != "wandb":
            raise ConfigError(f"logger.backend must be 'wandb' or 'none', got '{cfg.backend}'")
        if cfg.mode not in ("offline", "online"):
            raise ConfigError(f"logger.mode must be offline, online or disabled, got '{cfg.mode}'")
        if cfg.mode == "online" and not os.environ.get("WANDB_API_KEY") and not Path("~/.netrc").expanduser().exists():
            raise ConfigError("logger.mode=online needs a W&B login: run `wandb login` or set WANDB_API_KEY "
                              "in the environment (or use logger.mode=offline)")
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        for key, folder in WANDB_DIRS.items():  # W&B's cache and staging (its debug logs too) under the run directory
            if key not in USER_WANDB_DIRS:
                os.environ[key] = str(Path(run_dir) / "wandb" / folder)
        state = json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}
        run_id = state.get("id") or uuid.uuid4().hex[:12]
        self.last_step = int(state.get("step", 0))
        self.run = wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags),
                              mode=cfg.mode, dir=str(run_dir), config=config, job_type=job_type,
                              name=Path(run_dir).name, id=run_id, resume="allow", reinit="finish_previous")
        self._save_state()

    def _save_state(self) -> None:
        atomic_write_json(self.state_file, {"id": self.run.id, "step": self.last_step})

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)
            if step is not None and step > self.last_step:
                self.last_step = step
                self._save_state()

    def log_epoch(self, entry: dict[str, Any]) -> None:
        """One epoch's metrics (a history entry of the training loop) at step = epoch, once."""
        if self.run is not None and entry["epoch"] > self.last_step:
            self.log({k: v for k, v in entry.items() if k != "multipliers"}, step=entry["epoch"])

    def log_missing(self, history: list[dict[str, Any]]) -> None:
        """Log the entries of ``history`` beyond the last logged step (a run killed between save and log)."""
        for entry in history:
            self.log_epoch(entry)

    def table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.run is not None:
            import wandb

            self.run.log({name: wandb.Table(columns=columns, data=rows)})

    def image(self, name: str, path: str | Path) -> None:
        if self.run is not None:
            import wandb

            self.run.log({name: wandb.Image(str(path))})

    def segmentation_images(self, name: str, images, predictions, labels, class_names: list[str]) -> None:
        """Images with predicted and ground-truth masks (W&B mask overlay)."""
        if self.run is None:
            return
        import wandb

        classes = {i: n for i, n in enumerate(class_names)}
        classes[255] = "ignore"
        panels = []
        for image, prediction, label in list(zip(images, predictions, labels))[: self.max_images]:
            panels.append(wandb.Image(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy(), masks={
                "prediction": {"mask_data": prediction.cpu().numpy(), "class_labels": classes},
                "ground_truth": {"mask_data": label.cpu().numpy(), "class_labels": classes}}))
        self.run.log({name: panels})

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
