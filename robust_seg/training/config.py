"""The schemas of ``python -m robust_seg.train`` (``TrainConfig``: the ``scheme`` group, optimiser and schedule, SEA
paper Table 5) and ``python -m robust_seg.pretrain`` (``PretrainConfig``), and the check of a composed training config
(``check_train_config``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from robust_seg.data.config import DatasetConfig
from robust_seg.models.config import ModelConfig
from robust_seg.run.config import RunConfig


@dataclass
class AdversarialConfig:
    """PGD adversarial training (SEA paper Sec. 3, App. B.2): eps 4/255, step 0.01, CE, no random start."""

    eps: Any = "4/255"
    step_size: float = 0.01
    steps: int = 5
    loss: str = "ce"
    random_start: bool = False


@dataclass
class SchemeConfig:
    """A training scheme = how inputs are made (clean / adversarial) x which loss trains on them.

    ``loss`` is the ``scheme/loss`` group (ce, ls, fl, ecp, mbls, cals_alm, cals_hr): its
    ``name`` picks the loss, the other keys are its hyperparameters. So AT + CALS
    is ``scheme=at scheme/loss=cals_alm``: a composition, not a new code path.
    """

    name: str = "clean"
    adversarial: Optional[AdversarialConfig] = None
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "ce"})
    validation_fraction: float = 0.2
    hold_out_validation: Optional[bool] = None
    """Train without the held-out ``validation_fraction`` of the training split. None: only when the loss
    needs it (CALS multipliers, thesis App. V); true for every loss, so that an equal-budget comparison
    trains every loss on the same images."""


@dataclass
class OptimizerConfig:
    """SGD or AdamW; ``decoder_lr_ratio`` = decoder lr / encoder lr (Table 5 'LR ratio (Enc:Dec)' 1:10 -> 10)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-2
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    decoder_lr_ratio: float = 1.0


@dataclass
class ScheduleConfig:
    """Polynomial decay (power) after linear warmup, stepped per optimisation step."""

    epochs: int = 50
    warmup_epochs: float = 5
    power: float = 1.0
    warmup_start_factor: float = 1e-6


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


def train_loss_options(cfg) -> tuple[str, dict]:
    """``scheme.loss`` as (name, hyperparameters)."""
    from robust_seg.config_checks import plain_config

    options = plain_config(cfg)
    return options.pop("name", None), options


def check_train_loss(cfg, num_classes: int) -> None:
    from robust_seg.errors import ConfigError
    from robust_seg.training.losses import build_train_loss

    name, options = train_loss_options(cfg)
    try:
        build_train_loss(name, num_classes, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"scheme.loss: {error}") from None


def check_train_config(cfg) -> None:
    """Check a ``TrainConfig``."""
    from robust_seg.attacks.losses import LOSSES
    from robust_seg.config_checks import check_integers, check_known_keys, choice, finite_number, positive_int
    from robust_seg.data.config import as_dataset_config
    from robust_seg.errors import ConfigError
    from robust_seg.models.config import check_model_config
    from robust_seg.radii import parse_radius
    from robust_seg.reporting.config import check_logger_config
    from robust_seg.run.runtime import check_runtime_config

    check_known_keys(cfg, TrainConfig)
    check_integers(cfg)
    positive_int("batch_size", cfg.batch_size)
    positive_int("micro_batch_size", cfg.micro_batch_size, optional=True)
    positive_int("eval_every", cfg.eval_every)
    positive_int("max_steps_per_epoch", cfg.max_steps_per_epoch, optional=True)
    finite_number("auxiliary_weight", cfg.auxiliary_weight, minimum=0)
    positive_int("schedule.epochs", cfg.schedule.epochs)
    finite_number("schedule.warmup_epochs", cfg.schedule.warmup_epochs, minimum=0)
    if cfg.schedule.warmup_epochs > cfg.schedule.epochs:
        from robust_seg.run.provenance import command_overrides

        if any(o.lstrip("+").startswith("schedule.warmup_epochs=") for o in command_overrides()):
            raise ConfigError(f"schedule.warmup_epochs={cfg.schedule.warmup_epochs} is longer than schedule.epochs="
                              f"{cfg.schedule.epochs}: the learning rate would never reach its peak (lower the warmup)")
        import logging  # the recipe's warmup on a short run (e.g. schedule.epochs=2): said, not refused

        logging.getLogger(__name__).warning(
            "the warmup (%g epochs) is longer than the run (%d epochs): the learning rate reaches only %.0f%% of its "
            "peak; set schedule.warmup_epochs to change it", cfg.schedule.warmup_epochs, cfg.schedule.epochs,
            100 * cfg.schedule.epochs / cfg.schedule.warmup_epochs)
    finite_number("schedule.power", cfg.schedule.power, minimum=0)
    choice("optimizer.name", cfg.optimizer.name, ("adamw", "sgd"))
    finite_number("optimizer.lr", cfg.optimizer.lr, minimum=0, strictly=True)
    finite_number("optimizer.weight_decay", cfg.optimizer.weight_decay, minimum=0)
    finite_number("optimizer.decoder_lr_ratio", cfg.optimizer.decoder_lr_ratio, minimum=0, strictly=True)
    finite_number("scheme.validation_fraction", cfg.scheme.validation_fraction, minimum=0, strictly=True, maximum=1)
    adversarial = cfg.scheme.adversarial
    if adversarial is not None:
        positive_int("scheme.adversarial.steps", adversarial.steps)
        if parse_radius(adversarial.eps, "scheme.adversarial.eps") <= 0:
            raise ConfigError(f"scheme.adversarial.eps={adversarial.eps!r}: adversarial training needs a radius > 0")
        finite_number("scheme.adversarial.step_size", adversarial.step_size, minimum=0, strictly=True)
        choice("scheme.adversarial.loss", adversarial.loss, sorted(LOSSES))
    check_train_loss(cfg.scheme.loss, cfg.dataset.num_classes)
    parse_radius(cfg.robust_eval.eps, "robust_eval.eps")
    positive_int("robust_eval.iterations", cfg.robust_eval.iterations, minimum=0)  # 0: no robust validation
    positive_int("robust_eval.max_images", cfg.robust_eval.max_images, optional=True, minimum=0)
    check_runtime_config(cfg.runtime)
    check_logger_config(cfg.logger)
    as_dataset_config(cfg.dataset)
    check_model_config(cfg.model, evaluation=False)
