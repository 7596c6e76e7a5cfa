"""The value every attack returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AttackResult:
    """Per-image outcome of an attack on a batch.

    adv_images: (B, 3, H, W) in [0, 1], inside the threat model (checked).
    predictions: (B, H, W) int64 segmentation of ``adv_images``.
    accuracy: (B,) float64 pixel accuracy (ACC) of ``predictions`` over labelled pixels, in percent (0-100), the
        unit of every accuracy the project returns (``results.json``, ``rs.evaluate``, reports, tables).
    extras: attack-specific per-image tensors (e.g. 'norm', 'apsr', 'success',
        'loss', 'forwards', 'backwards') and scalars; components of an ensemble
        are stored as nested ``AttackResult`` in ``components``.
    """

    adv_images: torch.Tensor
    predictions: torch.Tensor
    accuracy: torch.Tensor
    extras: dict = field(default_factory=dict)
    components: dict[str, "AttackResult"] = field(default_factory=dict)
