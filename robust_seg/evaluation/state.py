"""Running totals of an evaluation, per radius and per attack component, saved after every batch."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robust_seg import IGNORE_INDEX
from robust_seg.metrics.apsr import apsr
from robust_seg.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou


@dataclass
class ComponentTotals:
    """Confusion matrix over the dataset + per-image accuracies (and per-image attack extras)."""

    confusion: torch.Tensor
    accuracy: list[float] = field(default_factory=list)
    extras: dict[str, list[float]] = field(default_factory=dict)

    def add(self, predictions, labels, accuracy, extras: dict) -> None:
        """One batch. An image without any labelled pixel has no accuracy: it is recorded as NaN and left out of
        ACC (counted as ``unlabelled_images``)."""
        self.confusion += confusion_matrix(predictions, labels, self.confusion.shape[0])
        labelled = (labels != IGNORE_INDEX).flatten(1).any(1)
        self.accuracy += torch.where(labelled, accuracy.double(), torch.full_like(accuracy, float("nan"),
                                                                                  dtype=torch.float64)).cpu().tolist()
        extras = {"apsr": apsr(predictions, labels), **extras}
        for key, value in extras.items():
            if isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() == accuracy.numel():
                self.extras.setdefault(key, []).extend(value.double().cpu().tolist())

    def summary(self, class_names: list[str]) -> dict:
        iou = iou_per_class(self.confusion)
        measured = [a for a in self.accuracy if a == a]
        return {
            "acc": 100.0 * sum(measured) / len(measured) if measured else float("nan"),
            "unlabelled_images": len(self.accuracy) - len(measured),
            "miou": 100.0 * mean_iou(self.confusion),
            "per_class_iou": {name: (None if v != v else 100.0 * v) for name, v in zip(class_names, iou.tolist())},
            "images": len(self.accuracy),
            "per_image_acc": [100.0 * a if a == a else None for a in self.accuracy],
            **({"per_image": self.extras} if self.extras else {}),
        }

    def state_dict(self) -> dict:
        return {"confusion": self.confusion, "accuracy": self.accuracy, "extras": self.extras}

    @classmethod
    def from_state(cls, state: dict) -> "ComponentTotals":
        return cls(state["confusion"], list(state["accuracy"]), {k: list(v) for k, v in state["extras"].items()})
