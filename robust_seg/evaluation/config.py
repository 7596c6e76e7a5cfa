"""The schema of ``python -m robust_seg.evaluate`` (``EvaluateConfig``) and the check of a composed evaluation config
before anything is built or written (``check_evaluate_config``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from robust_seg.attacks.config import AttackConfig
from robust_seg.run.config import RunConfig


@dataclass
class EvaluateConfig(RunConfig):
    attack: AttackConfig = field(default_factory=AttackConfig)
    split: str = "val"
    batch_size: int = 8
    max_images: Optional[int] = None
    calibration: bool = False
    """ECE/AECE/CWCE/NLL at every radius (robust_seg/evaluation/calibration.py); one extra forward per batch and radius."""
    calibration_temperature: Any = None
    """Post-hoc temperature scaling with ``calibration``: null (none), 'fit' (on the held-out split) or a number."""
    calibration_holdout_fraction: float = 0.2
    calibration_holdout_seed: int = 0
    """The held-out part of the training split that T is fitted on (as CALS' split with seed = this seed)."""
    figure_images: int = 4
    diagnostics: bool = True
    """Attack-failure checks in the report of a bounded attack (robust_seg/evaluation/diagnostics.py)."""
    shard: int = 0
    num_shards: int = 1
    """Evaluate only shard ``shard`` (the one-process batches shard, shard + num_shards, ...) of ``num_shards``;
    merge the shards' run directories with ``python -m robust_seg.merge`` (robust_seg/evaluation/shards.py)."""


def check_evaluate_config(cfg):
    """Check an ``EvaluateConfig`` section by section, each with its package's check; return the radii (parsed once,
    as ``Radius`` (value, key) pairs) and the resolved attack."""
    from robust_seg.attacks.config import check_attack_options
    from robust_seg.attacks.registry import resolve_attack
    from robust_seg.config_checks import check_integers, check_known_keys, finite_number, positive_int
    from robust_seg.data.config import as_dataset_config
    from robust_seg.errors import ConfigError
    from robust_seg.evaluation.calibration import parse_temperature
    from robust_seg.models.config import check_model_config, check_zoo_dataset
    from robust_seg.radii import parse_radii
    from robust_seg.reporting.config import check_logger_config
    from robust_seg.run.runtime import check_runtime_config

    check_known_keys(cfg, EvaluateConfig)
    check_integers(cfg)
    positive_int("batch_size", cfg.batch_size)
    positive_int("max_images", cfg.max_images, optional=True)
    positive_int("figure_images", cfg.figure_images, minimum=0)
    positive_int("num_shards", cfg.num_shards)
    positive_int("shard", cfg.shard, minimum=0)
    if cfg.shard >= cfg.num_shards:
        raise ConfigError(f"shard={cfg.shard} with num_shards={cfg.num_shards}: shards are numbered 0..{cfg.num_shards - 1}")
    if not cfg.split:
        raise ConfigError("split is empty: give val, train or a split name of the dataset")
    radii = parse_radii(cfg.attack.eps)
    attack = resolve_attack(cfg.attack)
    check_attack_options(attack)
    parse_temperature(cfg.calibration_temperature)
    finite_number("calibration_holdout_fraction", cfg.calibration_holdout_fraction, minimum=0, strictly=True,
                  maximum=1)
    check_runtime_config(cfg.runtime)
    check_logger_config(cfg.logger)
    as_dataset_config(cfg.dataset)
    check_model_config(cfg.model, evaluation=True)
    check_zoo_dataset(cfg.model, cfg.dataset)
    return radii, attack
