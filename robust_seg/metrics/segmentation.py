"""Segmentation metrics of the SEA paper (Sec. 2.1).

ACC is the per-image pixel accuracy over labelled pixels, averaged over images;
mIoU is computed from a confusion matrix accumulated over the whole dataset.
Pixels labelled ``IGNORE_INDEX`` never count.
"""
from __future__ import annotations

import torch

from robust_seg import IGNORE_INDEX


def pixel_accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image accuracy over labelled pixels, shape (B,).

    An image with no labelled pixel has accuracy 0 here (attacks then treat it as solved); the evaluation leaves
    such images out of ACC and counts them (``robust_seg.evaluation.state.ComponentTotals``).
    """
    valid = labels != IGNORE_INDEX
    correct = ((predictions == labels) & valid).flatten(1).sum(1)
    count = valid.flatten(1).sum(1)
    return correct.double() / count.clamp_min(1).double()


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 matrix, rows = ground truth, columns = prediction, labelled pixels only.

    A label outside ``0..K-1`` and ``IGNORE_INDEX`` (or a prediction outside ``0..K-1``) is a ``ValueError`` naming it.
    """
    valid = labels != IGNORE_INDEX
    bad = valid & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        raise ValueError(f"label value {int(labels[bad][0])} is outside 0..{num_classes - 1} (K = {num_classes}) and "
                         f"is not the ignore index {IGNORE_INDEX}")
    if bool(((predictions < 0) | (predictions >= num_classes))[valid].any()):
        raise ValueError(f"a prediction lies outside 0..{num_classes - 1} (K = {num_classes})")
    index = labels[valid].long() * num_classes + predictions[valid].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU per class from a confusion matrix; NaN for classes absent from both prediction and ground truth."""
    confusion = confusion.double()
    intersection = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.full_like(union, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over classes present in prediction or ground truth (MMSeg convention)."""
    iou = iou_per_class(confusion)
    return float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any() else float("nan")
