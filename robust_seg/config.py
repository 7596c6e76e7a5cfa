"""Top-level structured configs of the two entry points, registered in Hydra's ConfigStore.

``configs/train.yaml`` and ``configs/evaluate.yaml`` list these schemas first in
their defaults, so every group config is validated against the dataclass of
its package: a wrong type or an unknown key fails at composition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import re
from datetime import datetime
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from robust_seg.attacks.config import AttackConfig
from robust_seg.data.config import DatasetConfig
from robust_seg.models.config import ModelConfig
from robust_seg.reporting.config import LoggerConfig
from robust_seg.training.config import AdversarialConfig, OptimizerConfig, ScheduleConfig, SchemeConfig


@dataclass
class RobustEvalConfig:
    """Short PGD evaluation on the validation split during training (robust ACC).

    step_size: None = 2.5 * eps / iterations (the usual rule for few-step PGD).
    """

    eps: Any = "4/255"
    iterations: int = 10
    step_size: Optional[float] = None
    max_images: Optional[int] = 64


@dataclass
class RuntimeConfig:
    """Where and how a run executes. GPU-only speedups default to off (CPU everywhere else)."""

    device: str = "auto"
    num_workers: int = 0
    amp: bool = False
    channels_last: bool = False
    deterministic: bool = True
    threads: Optional[int] = None


@dataclass
class RunConfig:
    """What every run has: data, model, logging, runtime, seed and the run directory's name (resume)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    seed: int = 0
    resume: bool = False
    run_name: Optional[str] = None
    note: Optional[str] = None


@dataclass
class TrainConfig(RunConfig):
    scheme: SchemeConfig = field(default_factory=SchemeConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    robust_eval: RobustEvalConfig = field(default_factory=RobustEvalConfig)
    batch_size: int = 16
    micro_batch_size: Optional[int] = None
    auxiliary_weight: float = 0.4
    eval_every: int = 1
    export_path: Optional[str] = None
    max_steps_per_epoch: Optional[int] = None


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
    """Evaluate only shard ``shard`` (images shard, shard + num_shards, ...) of ``num_shards``; merge the shards'
    run directories with ``python -m robust_seg.merge`` (robust_seg/evaluation/shards.py)."""


@dataclass
class PretrainConfig:
    """``python -m robust_seg.pretrain`` (configs/pretrain.yaml): classifier pre-training of ``model``'s backbone
    on the synthetic dominant-class task (robust_seg/training/pretraining.py)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1
    seed: int = 0
    eval_every: int = 4
    threads: Optional[int] = None
    adversarial: Optional[AdversarialConfig] = None
    """None: clean pre-training; ``adversarial=${robust_preset}``: PGD AT with these settings."""
    robust_preset: AdversarialConfig = field(default_factory=lambda: AdversarialConfig(steps=2))
    robust_eval: RobustEvalConfig = field(default_factory=lambda: RobustEvalConfig(max_images=128))
    output: Optional[str] = None
    run_name: Optional[str] = None


ASSETS = Path(__file__).resolve().parent / "assets"
CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
"""The Hydra config directory (absolute: the entry points work as ``python -m`` and as console scripts)."""


def asset_path(name: str) -> str:
    """``${asset:NAME}`` in configs: a file shipped in ``robust_seg/assets`` (e.g. the embedded model)."""
    return str(ASSETS / name)


NAME_CHARACTERS = "A-Za-z0-9._+=,-"
"""The characters of a run name (one plain path component)."""
RUN_NAME = re.compile(rf"^[A-Za-z0-9][{NAME_CHARACTERS}]*$")


def run_directory_name(run_name: Optional[str]) -> str:
    """``${run_dir_name:${run_name}}`` in the Hydra run dirs: the run's name, or the start time when it has none.
    A name is one plain path component (letters, digits and ``. _ + = , -``, not starting with a dot)."""
    if run_name in (None, ""):
        return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    name = str(run_name)
    if not RUN_NAME.match(name) or len(name) > 200:
        from robust_seg.errors import ConfigError

        bad = next((c for c in name if not re.match(rf"[{NAME_CHARACTERS}]", c)), name[:1])
        raise ConfigError(f"run_name={name!r}: a run name is one plain name (letters, digits, . _ + = , -; not "
                          f"starting with '.', at most 200 characters), not {bad!r}: e.g. run_name="
                          f"{re.sub(rf'[^{NAME_CHARACTERS}]+', '_', name).strip('._') or 'my_run'}")
    return name


def zoo_sweep(dataset: str) -> str:
    """``${zoo_sweep:DATASET}`` in a sweep: ``zoo/<name>,...`` for every zoo model of that dataset (robust_seg.zoo)."""
    from robust_seg.zoo import zoo_models

    return ",".join(f"zoo/{model.name}" for model in zoo_models(dataset))


def paper_table_sweep(table: str, part: str) -> str:
    """``${paper_table_sweep:TABLE,rows|columns}`` in a paper table's sweep: its row or column configs, read from the
    table's data file (``robust_seg.reporting.paper_tables``)."""
    from robust_seg.reporting.paper_tables import sweep_values

    return sweep_values(table, part)


def register_configs() -> None:
    """Store the schemas under the names the primary configs list first in their defaults."""
    if not OmegaConf.has_resolver("paper_table_sweep"):
        OmegaConf.register_new_resolver("paper_table_sweep", paper_table_sweep)
    if not OmegaConf.has_resolver("zoo_sweep"):
        OmegaConf.register_new_resolver("zoo_sweep", zoo_sweep)
    if not OmegaConf.has_resolver("asset"):
        OmegaConf.register_new_resolver("asset", asset_path)
    if not OmegaConf.has_resolver("run_dir_name"):  # cached: one time stamp per process
        OmegaConf.register_new_resolver("run_dir_name", run_directory_name, use_cache=True)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="pretrain_schema", node=PretrainConfig)
