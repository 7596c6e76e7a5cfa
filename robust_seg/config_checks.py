"""Every config value checked before the first model or dataset is built.

Hydra's schemas (``robust_seg.config``) check types and unknown keys at composition; these functions check
ranges, names and combinations, and raise ``ConfigError`` with one line naming the key, the bad value and the
fix. The evaluation and training drivers call them first.
"""
from __future__ import annotations

import math
from typing import Any

from robust_seg.errors import ConfigError
from robust_seg.radii import parse_radii, parse_radius

POSITIVE_INT_OPTIONS = ("iterations", "restarts", "steps", "queries", "check_every")
"""Attack options that count something: integers >= 1."""
CHOICE_OPTIONS = {"schedule": ("const", "red"), "loss_schedule": ("stage", "run")}
"""Attack options that name one of a few choices."""
INT64 = 2**63 - 1
"""The largest integer torch, numpy and the data loader take (a config integer beyond it is refused by name)."""
SEED_KEYS = ("seed", "attack.seed", "dataset.seed", "calibration_holdout_seed")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(name: str, value: Any, *, optional: bool = False, minimum: int = 1) -> None:
    if optional and value is None:
        return
    if not _is_int(value) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or null" if optional else "")
        raise ConfigError(f"{name}={value!r}: must be {allowed}")


def finite_number(name: str, value: Any, *, minimum: float | None = None, strictly: bool = False,
                  maximum: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r}: must be a finite number")
    if minimum is not None and (value <= minimum if strictly else value < minimum):
        raise ConfigError(f"{name}={value!r}: must be {'>' if strictly else '>='} {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value!r}: must be <= {maximum:g}")


def did_you_mean(value: Any, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to a mistyped ``value``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: unknown{did_you_mean(value, choices)}; choose from "
                          f"{', '.join(map(str, choices))}")


def check_integers(cfg) -> None:
    """Every integer of the config within 64 bits, and seeds in [0, 2^63 - 1] (negative seeds cannot seed numpy's
    generators), each named with its key; bools are not integers here."""
    from robust_seg.provenance import plain_config

    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        elif _is_int(value) and not -INT64 - 1 <= value <= INT64:
            raise ConfigError(f"{path}={value}: beyond the 64-bit integers (at most {INT64})")

    plain = plain_config(cfg)
    walk(plain, "")
    for key in SEED_KEYS:
        node = plain
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and (not _is_int(node) or node < 0):
            raise ConfigError(f"{key}={node!r}: a seed is an integer in [0, {INT64}]")


def check_known_keys(cfg, schema) -> None:
    """Refuse keys the schema does not have (e.g. a mistyped ``+key=value``), naming the key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    try:
        OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(cfg) if OmegaConf.is_config(cfg) else cfg)
    except ConfigKeyError as error:
        key = getattr(error, "full_key", None) or str(error).splitlines()[0]
        raise ConfigError(f"unknown config key {key}{similar_key(schema, str(key))}: check its spelling "
                          "(python -m robust_seg.evaluate --help lists the options)") from None


def similar_key(schema, key: str) -> str:
    """`` (did you mean 'a.b'?)`` for a mistyped dotted ``key`` of ``schema``, from the keys beside it."""
    from omegaconf import OmegaConf

    parent = key.rpartition(".")[0]
    node = OmegaConf.structured(schema)
    try:
        node = OmegaConf.select(node, parent) if parent else node
        keys = list(node.keys()) if OmegaConf.is_dict(node) else []
    except Exception:  # noqa: BLE001  (a suggestion only)
        keys = []
    return did_you_mean(key, [f"{parent}.{k}" if parent else k for k in keys])


def check_runtime(cfg) -> None:
    from robust_seg.runtime import select_device

    select_device(cfg.device)
    positive_int("runtime.threads", cfg.threads, optional=True)
    positive_int("runtime.num_workers", cfg.num_workers, minimum=0)


def check_logger(cfg) -> None:
    choice("logger.backend", cfg.backend, ("wandb", "none"))
    choice("logger.mode", cfg.mode, ("offline", "online", "disabled"))
    positive_int("logger.log_images", cfg.log_images, minimum=0)


def check_dataset(cfg) -> None:
    from robust_seg.data.config import as_dataset_config

    as_dataset_config(cfg)


def check_model(cfg, *, evaluation: bool) -> None:
    from robust_seg.models.checkpoints import CHECKPOINT_FORMATS

    for key, group in (("target", "custom"), ("config", "mmseg_config")):
        if cfg.name == group and not getattr(cfg, key, None):
            example = "my_package.my_factory" if key == "target" else "path/to/config.py"
            raise ConfigError(f"model={group} needs model.{key}=... (e.g. model.{key}={example})")

    choice("model.checkpoint_format", cfg.checkpoint_format, CHECKPOINT_FORMATS)
    choice("model.inference.mode", cfg.inference.mode, ("whole", "slide"))
    if cfg.inference.mode == "slide":
        positive_int("model.inference.crop_size", cfg.inference.crop_size)
        positive_int("model.inference.stride", cfg.inference.stride)
    positive_int("model.inference.pad_to_multiple", cfg.inference.pad_to_multiple, optional=True)
    if cfg.checkpoint_sha256 is not None and (len(str(cfg.checkpoint_sha256)) != 64 or
                                              any(c not in "0123456789abcdefABCDEF" for c in str(cfg.checkpoint_sha256))):
        raise ConfigError(f"model.checkpoint_sha256={cfg.checkpoint_sha256!r}: must be 64 hexadecimal digits")
    if evaluation and not cfg.checkpoint and not cfg.random_weights and not cfg.target:  # a factory brings its own
        raise ConfigError(f"model {cfg.name} has no trained weights: give model.checkpoint=<path or URL> "
                          "(model=embedded is the shipped model), or model.random_weights=true to evaluate "
                          "random weights on purpose")


def check_attack_options(attack) -> None:
    """Ranges of a resolved attack's options: counts >= 1, finite numbers, known loss names."""
    from robust_seg.attacks.losses import LOSSES

    registry_losses = attack.name in ("sea", "sea_square", "apgd", "pgd")  # others check their own loss names
    for key, value in attack.options.items():
        name = f"attack.options.{key}"
        if key in POSITIVE_INT_OPTIONS:
            positive_int(name, value)
        elif key == "step_size" and isinstance(value, str) and value != "paper":
            raise ConfigError(f"{name}={value!r}: a number, or 'paper' for the paper's step sizes")
        elif key in CHOICE_OPTIONS:
            choice(name, value, CHOICE_OPTIONS[key])
        elif isinstance(value, float):
            finite_number(name, value)
        if not registry_losses:
            continue
        if key == "loss":
            choice(name, value, sorted(LOSSES))
        if key == "losses":
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{name}={value!r}: must be a non-empty list of losses ({', '.join(sorted(LOSSES))})")
            for loss in value:
                choice(name, loss, sorted(LOSSES))


def check_evaluate_config(cfg):
    """Check an ``EvaluateConfig``; return the parsed radii and the resolved attack."""
    from robust_seg.attacks.registry import resolve_attack
    from robust_seg.config import EvaluateConfig

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
    from robust_seg.evaluation.calibration import parse_temperature

    parse_temperature(cfg.calibration_temperature)
    finite_number("calibration_holdout_fraction", cfg.calibration_holdout_fraction, minimum=0, strictly=True,
                  maximum=1)
    check_runtime(cfg.runtime)
    check_logger(cfg.logger)
    check_dataset(cfg.dataset)
    check_model(cfg.model, evaluation=True)
    check_zoo_dataset(cfg.model, cfg.dataset)
    return radii, attack


def check_zoo_dataset(model, dataset) -> None:
    """A zoo model is evaluated on the dataset it was trained for (its classes are that dataset's)."""
    zoo = model.get("zoo")
    if zoo is not None and zoo.dataset != dataset.name:
        raise ConfigError(f"model=zoo/{model.name} was trained on {zoo.dataset}, not {dataset.name}: "
                          f"add dataset={zoo.dataset}")


def train_loss_options(cfg) -> tuple[str, dict]:
    """``scheme.loss`` as (name, hyperparameters)."""
    from robust_seg.provenance import plain_config

    options = plain_config(cfg)
    return options.pop("name", None), options


def check_train_loss(cfg, num_classes: int) -> None:
    from robust_seg.training.losses import build_train_loss

    name, options = train_loss_options(cfg)
    try:
        build_train_loss(name, num_classes, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"scheme.loss: {error}") from None


def check_train_config(cfg) -> None:
    """Check a ``TrainConfig``."""
    from robust_seg.attacks.losses import LOSSES
    from robust_seg.config import TrainConfig

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
        from robust_seg.provenance import command_overrides

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
    check_runtime(cfg.runtime)
    check_logger(cfg.logger)
    check_dataset(cfg.dataset)
    check_model(cfg.model, evaluation=False)
