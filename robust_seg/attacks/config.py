"""Structured-config schema of the ``attack`` group (configs/attack/*.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class AttackConfig:
    """An attack of ``robust_seg.attacks.registry.ATTACKS`` run at every radius of ``eps``.

    eps: one radius or a list, written as the papers do (``8/255``, ``0.0314``; 0 = clean).
        Minimal-norm attacks ignore it for the attack itself and use it for the
        robust-at-eps curves.
    options: keyword arguments of the attack function (checked against its signature).
    seed: base seed of the attack's random starts.
    target: None (untargeted) or the target map of a targeted attack, e.g. ``{kind: class, class_index: 0}``
        or ``{kind: map, path: target.png}`` (``robust_seg.attacks.targets``; only attacks that take
        ``target_labels``).
    """

    name: str = "none"
    eps: Any = field(default_factory=lambda: [0.0])
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    target: Any = None
    note: Optional[str] = None


POSITIVE_INT_OPTIONS = ("iterations", "restarts", "steps", "queries", "check_every")
"""Attack options that count something: integers >= 1."""
CHOICE_OPTIONS = {"schedule": ("const", "red"), "loss_schedule": ("stage", "run")}
"""Attack options that name one of a few choices."""
REGISTRY_LOSS_ATTACKS = ("sea", "sea_square", "apgd", "pgd")
"""Attacks whose ``loss`` / ``losses`` options name losses of ``robust_seg.attacks.losses.LOSSES`` (the others check
their own loss names)."""


def check_attack_options(attack) -> None:
    """Ranges of a resolved attack's options (``ConfigError`` naming the key): counts >= 1, finite numbers, known
    choices and loss names. The names themselves are checked against the attack function's signature when the
    attack is resolved (``robust_seg.attacks.registry.resolve_attack``)."""
    from robust_seg.attacks.losses import LOSSES
    from robust_seg.config_checks import choice, finite_number, positive_int
    from robust_seg.errors import ConfigError

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
        if attack.name not in REGISTRY_LOSS_ATTACKS:
            continue
        if key == "loss":
            choice(name, value, sorted(LOSSES))
        if key == "losses":
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{name}={value!r}: must be a non-empty list of losses ({', '.join(sorted(LOSSES))})")
            for loss in value:
                choice(name, loss, sorted(LOSSES))
