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
