"""Generic validators of config values, shared by every package's own checks.

Hydra's schemas check types and unknown keys at composition; each package checks the ranges, names and
combinations of its own section (``evaluation/config.py``, ``training/config.py``, ``models/config.py``,
``attacks/config.py``, ...) with these functions, which raise ``ConfigError`` with one line naming the key, the bad
value and the fix.
"""
from __future__ import annotations

import math
from typing import Any

from robust_seg.errors import ConfigError

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


def plain_config(cfg) -> dict:
    """``cfg`` (DictConfig, dataclass or dict) as plain, resolved Python values."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    if hasattr(cfg, "__dataclass_fields__"):
        return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    return dict(cfg)
