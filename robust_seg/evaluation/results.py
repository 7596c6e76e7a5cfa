"""The results of an evaluation as typed data: what the reports, the W&B entries and ``results.json`` are made of.

``EvaluationResults.as_dict()`` is ``results.json`` (and what ``python -m robust_seg.evaluate``, the merge of shards
and ``rs.evaluate`` return); the table builders read those files back as plain dictionaries.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from robust_seg.evaluation.state import ComponentTotals
from robust_seg.metrics.segmentation import iou_per_class, mean_iou

WORST = "worst_case"
"""The key of the image-wise worst case over an attack's components (SEA paper Sec. 2.4)."""


@dataclass
class ComponentResult:
    """One component of an attack (a loss run, Square, or the worst case) at one radius: ACC (mean of the per-image
    pixel accuracies over images with a labelled pixel) and mIoU (from the dataset's confusion matrix), in %."""

    acc: float
    unlabelled_images: int
    miou: float
    per_class_iou: dict[str, float | None]
    images: int
    per_image_acc: list[float | None]
    per_image: dict[str, list[float]] = field(default_factory=dict)
    """Per-image extras of the attack (APSR, norms, passes), in dataset order."""

    @classmethod
    def from_totals(cls, totals: ComponentTotals, class_names: list[str]) -> "ComponentResult":
        iou = iou_per_class(totals.confusion)
        measured = [a for a in totals.accuracy if a == a]
        return cls(acc=100.0 * sum(measured) / len(measured) if measured else float("nan"),
                   unlabelled_images=len(totals.accuracy) - len(measured),
                   miou=100.0 * mean_iou(totals.confusion),
                   per_class_iou={name: (None if v != v else 100.0 * v) for name, v in zip(class_names, iou.tolist())},
                   images=len(totals.accuracy),
                   per_image_acc=[100.0 * a if a == a else None for a in totals.accuracy],
                   per_image=dict(totals.extras))

    def as_dict(self) -> dict:
        entry = {"acc": self.acc, "unlabelled_images": self.unlabelled_images, "miou": self.miou,
                 "per_class_iou": self.per_class_iou, "images": self.images, "per_image_acc": self.per_image_acc}
        return {**entry, "per_image": self.per_image} if self.per_image else entry


@dataclass
class EvaluationResults:
    """An evaluation's numbers and what made them. ``radii[key][component]`` for a bounded attack (keys as the
    papers write the radii, e.g. ``8/255``); ``minimal_norm`` (thesis Table 5.1) for a minimal-norm attack."""

    attack: str
    attack_config: str
    attack_note: str | None
    model: str
    weights: str
    random_weights: bool
    dataset: str
    split: str
    images: int
    seconds: float
    provenance: dict
    radii: dict[str, dict[str, ComponentResult]]
    shard: dict | None = None
    minimal_norm: dict | None = None
    not_fooled_percentage: dict[str, float] | None = None
    calibration: dict | None = None
    paper: dict | None = None
    diagnostics: dict | None = None

    def worst_case(self, key: str) -> ComponentResult:
        return self.radii[key][WORST]

    def as_dict(self) -> dict:
        """``results.json``: every field, the optional ones only when set."""
        result = {"attack": self.attack, "attack_config": self.attack_config, "attack_note": self.attack_note,
                  "model": self.model, "weights": self.weights, "random_weights": self.random_weights,
                  "dataset": self.dataset, "split": self.split, "images": self.images, "seconds": self.seconds,
                  "provenance": self.provenance,
                  "radii": {key: {name: entry.as_dict() for name, entry in components.items()}
                            for key, components in self.radii.items()}}
        for name in ("shard", "minimal_norm", "not_fooled_percentage", "calibration", "paper", "diagnostics"):
            value = getattr(self, name)
            if value is not None:
                result[name] = value
        return result
