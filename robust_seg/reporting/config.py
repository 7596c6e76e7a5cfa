"""Structured-config schema of the ``logger`` group (configs/logger/*.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class LoggerConfig:
    """Weights & Biases logging. ``backend: none`` logs to files only.

    mode: ``offline`` (default: no account, no network, files in the run dir),
    ``online`` (needs ``WANDB_API_KEY`` in the environment, never in a config)
    or ``disabled``.
    """

    backend: str = "wandb"
    mode: str = "offline"
    project: str = "robust_seg"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    log_images: int = 4


def check_logger_config(cfg) -> None:
    """The ``logger`` section's values (``ConfigError`` naming the key)."""
    from robust_seg.config_checks import choice, positive_int

    choice("logger.backend", cfg.backend, ("wandb", "none"))
    choice("logger.mode", cfg.mode, ("offline", "online", "disabled"))
    positive_int("logger.log_images", cfg.log_images, minimum=0)
