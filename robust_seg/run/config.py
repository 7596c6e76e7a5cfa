"""The schema every run shares (``RunConfig``: data, model, logging, runtime, seed, run name), the resolvers of the
configs and the registration of the entry points' schemas in Hydra's ConfigStore.

``configs/train.yaml``, ``configs/evaluate.yaml`` and ``configs/pretrain.yaml`` list their schema first in their
defaults (``evaluation/config.py``, ``training/config.py``), so every group config is validated against the
dataclass of its package: a wrong type or an unknown key fails at composition.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from robust_seg.data.config import DatasetConfig
from robust_seg.models.config import ModelConfig
from robust_seg.names import ASSETS
from robust_seg.reporting.config import LoggerConfig


@dataclass
class RuntimeConfig:
    """Where and how a run executes. GPU-only speedups default to off (CPU everywhere else)."""

    device: str = "auto"
    num_workers: int = 0
    amp: bool = False
    channels_last: bool = False
    deterministic: bool = True
    threads: Optional[int] = None
    processes: int = 1
    """Processes on this machine, started by the command itself (robust_seg/run/launch.py): the shards of an
    evaluation, the DDP ranks of a training; torchrun's workers without torchrun. Command line only."""


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
    from robust_seg.models.zoo import zoo_models

    return ",".join(f"zoo/{model.name}" for model in zoo_models(dataset))


def paper_table_sweep(table: str, part: str) -> str:
    """``${paper_table_sweep:TABLE,rows|columns}`` in a paper table's sweep: its row or column configs, read from the
    table's data file (``robust_seg.reporting.paper_tables``)."""
    from robust_seg.reporting.paper_tables import sweep_values

    return sweep_values(table, part)


SCHEMAS: dict[str, type] = {}
"""The schema of each registered entry point (``evaluate``, ``train``, ``pretrain``): the command line's
did-you-mean hints read the running entry's."""


def register_configs(**schemas: type) -> None:
    """Register the resolvers and store each entry point's schema under the name its primary config lists first
    in its defaults: ``register_configs(evaluate=EvaluateConfig)`` stores ``evaluate_schema``."""
    if not OmegaConf.has_resolver("paper_table_sweep"):
        OmegaConf.register_new_resolver("paper_table_sweep", paper_table_sweep)
    if not OmegaConf.has_resolver("zoo_sweep"):
        OmegaConf.register_new_resolver("zoo_sweep", zoo_sweep)
    if not OmegaConf.has_resolver("asset"):
        OmegaConf.register_new_resolver("asset", asset_path)
    if not OmegaConf.has_resolver("run_dir_name"):  # cached: one time stamp per process
        OmegaConf.register_new_resolver("run_dir_name", run_directory_name, use_cache=True)
    store = ConfigStore.instance()
    for entry, schema in schemas.items():
        if SCHEMAS.get(entry) is schema and f"{entry}_schema.yaml" in store.repo:
            continue  # stored already: converting the dataclass again costs 0.05 s per composition
        SCHEMAS[entry] = schema
        store.store(name=f"{entry}_schema", node=schema)
