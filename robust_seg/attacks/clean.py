"""The null attack: predictions on the unperturbed images (radius 0)."""
from __future__ import annotations

import torch

from robust_seg.attacks.losses import predicted_classes
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.segmentation import pixel_accuracy


@torch.no_grad()
def clean(model, images: torch.Tensor, labels: torch.Tensor, *, eps: float = 0.0) -> AttackResult:
    """Clean predictions; ``eps`` is accepted so that every attack shares one calling convention."""
    predictions = predicted_classes(model(images))
    return AttackResult(images, predictions, 100 * pixel_accuracy(predictions, labels))
