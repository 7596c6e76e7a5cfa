"""Structured-config schemas of training: ``scheme`` group, optimiser and schedule (SEA paper Table 5)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


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
