"""The results of an evaluation as typed data: what the reports, the W&B entries and ``results.json`` are made of.

``build_results`` turns an evaluation's running totals into ``EvaluationResults`` with their summaries;
``EvaluationResults.as_dict()`` is ``results.json`` (and what ``python -m robust_seg.evaluate``, the merge of shards
and ``rs.evaluate`` return); the table builders read those files back as plain dictionaries. The results keys
(``WORST``, ``MINIMAL_NORM_KEY``) are defined once, in ``robust_seg.names``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from robust_seg.evaluation.state import ComponentTotals
from robust_seg.metrics.segmentation import iou_per_class, mean_iou

from robust_seg.names import MINIMAL_NORM_KEY, WORST
from robust_seg.radii import Radius


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
    corruptions: dict | None = None
    radius_values: dict[str, float] = field(default_factory=dict, repr=False)
    """The value of each radius key (for the plots; not part of ``results.json``, whose keys name the radii)."""

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
        for name in ("shard", "minimal_norm", "not_fooled_percentage", "calibration", "paper", "diagnostics",
                     "corruptions"):
            value = getattr(self, name)
            if value is not None:
                result[name] = value
        return result


def build_results(cfg, attack, radii: list[Radius], provenance: dict, totals: dict, calibration, state: dict,
                  class_names: list[str], shard=None, diagnostics=None) -> EvaluationResults:
    """The results of an evaluation from its running totals (one process, a shard, or merged shards), with every
    summary: minimal-norm statistics, not-fooled percentages, calibration, the published numbers of a zoo model and
    the diagnostics. ``radii`` are the evaluation's ``Radius`` (value, key) pairs."""
    from robust_seg.evaluation.diagnostics import not_applicable
    from robust_seg.metrics.apsr import not_fooled_percentage
    from robust_seg.reporting.published import paper_numbers

    keys = provenance["radii"]
    runs = attack.run_keys(keys)
    components = {key: {name: ComponentResult.from_totals(comp, class_names) for name, comp in totals[key].items()}
                  for key in runs}
    results = EvaluationResults(
        attack=attack.label, attack_config=attack.description, attack_note=cfg.attack.note,
        model=provenance["model"]["name"], weights=provenance["model"]["label"],
        random_weights=provenance["model"]["source"] in ("random", "backbone"), dataset=provenance["dataset"]["name"],
        split=cfg.split, images=len(totals[runs[-1]][WORST].accuracy), seconds=state["seconds"],
        provenance=provenance, radii=components, radius_values={radius.key: radius.value for radius in radii})
    if shard is not None and not shard.whole:
        results.shard = {"index": shard.index, "count": shard.count,
                         "note": "one shard's images only: merge the shards with python -m robust_seg.merge"}
    if attack.corruption:
        from robust_seg.attacks.corruptions import chosen, corruption_summary, load_reference

        options = attack.options
        reference = load_reference(options["reference"]) if options.get("reference") else None
        entries = {key: {"acc": comps[WORST].acc, "miou": comps[WORST].miou} for key, comps in components.items()}
        results.corruptions = corruption_summary(entries, *chosen(options), reference)
        results.corruptions["seconds"] = {key: sum(comps[WORST].per_image.get("seconds", []))
                                          for key, comps in components.items()}
    elif attack.minimal_norm:
        results.minimal_norm = minimal_norm_summary(components.pop(MINIMAL_NORM_KEY)[WORST].as_dict(), radii,
                                                    state["seconds"])
    else:
        results.not_fooled_percentage = {
            key: not_fooled_percentage(results.worst_case(key).per_image["apsr"]) for key in keys}
    if calibration is not None:
        results.calibration = calibration.summary()
    zoo = cfg.model.get("zoo")
    paper = paper_numbers(zoo.paper, zoo.readme) if zoo else None
    if paper is not None:
        results.paper = {**paper, "attack": cfg.attack.name, "protocol": zoo.protocol,
                         "scenario": "targeted" if cfg.attack.get("target") else "untargeted"}
    if not attack.minimal_norm and not attack.corruption:
        results.diagnostics = diagnostics.summary(state["seconds"] - diagnostics.seconds, attack) \
            if diagnostics is not None else not_applicable()
    return results


def minimal_norm_summary(entry: dict, radii: list[Radius], seconds: float) -> dict:
    """Thesis Table 5.1 (median/mean norm x 255), Table IV-2 (cost per image), Figure 5.3 and SEA App. C.4
    (% of images not brought to APSR >= 99% within eps) from the per-image norms and successes."""
    import torch

    from robust_seg.metrics.apsr import complexity_summary, default_eps_grid, norm_summary, not_fooled_curve

    per_image = {k: torch.tensor(v) for k, v in entry["per_image"].items()}
    norms, success = per_image["norm"], per_image["success"].bool()
    return {
        **norm_summary(norms, success),
        "complexity": complexity_summary(per_image["forwards"], per_image["backwards"], seconds),
        "not_fooled_percentage": dict(zip([radius.key for radius in radii], not_fooled_curve(
            norms, success, [radius.value for radius in radii])["percentage"])),
        "curve": not_fooled_curve(norms, success, default_eps_grid()),
        "adversarial": {k: entry[k] for k in ("acc", "miou", "images")},
        "per_image": entry["per_image"],
    }
