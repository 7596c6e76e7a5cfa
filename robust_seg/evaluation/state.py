"""Running totals of an evaluation, per radius and per attack component, saved after every batch."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robust_seg import IGNORE_INDEX
from robust_seg.metrics.apsr import apsr
from robust_seg.metrics.segmentation import confusion_matrix, pixel_accuracy


@dataclass
class ComponentTotals:
    """Confusion matrix over the dataset + per-image accuracies (and per-image attack extras)."""

    confusion: torch.Tensor
    accuracy: list[float] = field(default_factory=list)
    extras: dict[str, list[float]] = field(default_factory=dict)
    indices: list[int] = field(default_factory=list)
    """The dataset index of each image (per-image lists follow this order; shards are merged by it)."""

    def add(self, predictions, labels, extras: dict, indices=None) -> None:
        """One batch: its pixel accuracies (``pixel_accuracy``, fractions), confusion matrix and APSR from the
        predictions. An image without any labelled pixel has no accuracy: it is recorded as NaN and left out of
        ACC (counted as ``unlabelled_images``)."""
        accuracy = pixel_accuracy(predictions, labels)
        self.confusion += confusion_matrix(predictions, labels, self.confusion.shape[0])
        self.indices += [int(i) for i in indices] if indices is not None else \
            list(range(len(self.indices), len(self.indices) + labels.shape[0]))
        labelled = (labels != IGNORE_INDEX).flatten(1).any(1)
        self.accuracy += torch.where(labelled, accuracy.double(), torch.full_like(accuracy, float("nan"),
                                                                                  dtype=torch.float64)).cpu().tolist()
        extras = {"apsr": apsr(predictions, labels), **extras}
        for key, value in extras.items():
            if isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() == accuracy.numel():
                self.extras.setdefault(key, []).extend(value.double().cpu().tolist())

    def state_dict(self) -> dict:
        return {"confusion": self.confusion, "accuracy": self.accuracy, "extras": self.extras, "indices": self.indices}

    @classmethod
    def from_state(cls, state: dict) -> "ComponentTotals":
        return cls(state["confusion"], list(state["accuracy"]), {k: list(v) for k, v in state["extras"].items()},
                   list(state.get("indices", range(len(state["accuracy"])))))

    @classmethod
    def merged(cls, parts: list["ComponentTotals"]) -> "ComponentTotals":
        """Shards of one evaluation as one: confusion matrices summed, per-image lists in dataset order."""
        indices = [i for part in parts for i in part.indices]
        order = sorted(range(len(indices)), key=indices.__getitem__)
        accuracy = [a for part in parts for a in part.accuracy]
        keys = list(dict.fromkeys(k for part in parts for k in part.extras))
        extras = {k: [v for part in parts for v in part.extras.get(k, [])] for k in keys}
        return cls(sum((part.confusion for part in parts), torch.zeros_like(parts[0].confusion)),
                   [accuracy[i] for i in order], {k: [v[i] for i in order] for k, v in extras.items()},
                   [indices[i] for i in order])
