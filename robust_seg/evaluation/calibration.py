"""Calibration metrics in evaluation runs, on clean and on adversarial images (thesis 6.5.1, Appendix V.3, V.5).

With ``calibration=true`` the evaluation driver feeds, at every radius, the logits
of the images the attack returns (its worst case; the clean images at radius 0)
into a `CalibrationAccumulator`: ECE (15 equal-width bins), AECE (equal-mass
bins), CWCE and NLL over labelled pixels, each in both conventions of the
literature, ``*_dataset`` (one pool of all pixels of the dataset) and
``*_image_mean`` (per image, then averaged; the public CALS code reports this
one). This costs one extra forward per batch and radius, and only then. So the
calibration of a model under attack ("ECE under attack") is measured the same
way as on clean data.

Post-hoc temperature scaling (Guo et al. 2017; thesis Table V-1),
``calibration_temperature``:

- ``null``: no scaling, metrics at T = 1 only;
- a number: that T;
- ``fit``: T minimising the NLL on a held-out split, fitted once before the
  evaluation on clean images (T is a property of the model; the same T is then
  applied at every radius).

Choice (held-out split for ``fit``): the deterministic ``calibration_holdout_fraction``
(20%, as Appendix V.2 for PASCAL-VOC: 1464 -> 1171 / 293) of the dataset's
*training* split, drawn by `robust_seg.data.splits.split_train_validation`
with ``calibration_holdout_seed`` -- the very images a CALS run with
``seed`` = that seed held out for its multipliers. The thesis treats VOC's
validation split as its test split, so the evaluation split stays untouched.
Caveat: a model trained on the *whole* training split (the training loop
holds images out only for the CALS losses) has seen these images, and T fitted
on them is biased towards 1 for an overfitted model.

Metrics are reported before (``T=1``) and after (``temperature_scaled``) scaling.
Everything is kept as plain tensors in the evaluation state after every batch,
so ``resume=true`` reproduces an uninterrupted run.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from robust_seg.data import build_dataset, build_loader
from robust_seg.errors import ConfigError
from robust_seg.metrics.calibration import CalibrationAccumulator, ReliabilityBins, plot_reliability_diagram
from robust_seg.metrics.temperature import LabelledPixelSample, fit_temperature, temperature_scaling_table

UNSCALED = "T=1"
SCALED = "temperature_scaled"
TEMPERATURE_FIT_PIXELS = 1_000_000
"""At most this many labelled pixels (uniform sample) of the held-out split enter the temperature fit."""
NUM_BINS = 15
"""Equal-width (ECE, reliability diagram) and equal-mass (AECE) bins, thesis eq. 6.14."""
METRICS = ("ece", "aece", "cwce", "nll")
CONVENTIONS = ("dataset", "image_mean")


def parse_temperature(value) -> float | str | None:
    """``calibration_temperature``: None, 'fit' or a positive number; anything else is a one-line error."""
    if value is None or value == "fit":
        return value
    try:
        temperature = float(value)
    except (TypeError, ValueError):
        temperature = float("nan")
    if not temperature > 0 or math.isinf(temperature):
        raise ConfigError(f"calibration_temperature must be null, 'fit' or a positive number, got {value!r}")
    return temperature


@torch.no_grad()
def fit_holdout_temperature(model, dataset_cfg, *, fraction: float, seed: int, batch_size: int, device,
                            max_pixels: int = TEMPERATURE_FIT_PIXELS) -> float:
    """Temperature minimising the NLL on the held-out part of the training split (module doc)."""
    from robust_seg.data.splits import split_train_validation

    train_split = build_dataset(dataset_cfg, split=dataset_cfg.train_split, train=False)
    _, held_out = split_train_validation(len(train_split), fraction, seed)
    if not held_out:
        raise ConfigError(f"calibration_temperature=fit: calibration_holdout_fraction={fraction} of the "
                          f"{len(train_split)} training images holds none out")
    sample = LabelledPixelSample(max_pixels, seed=seed)
    loader = build_loader(torch.utils.data.Subset(train_split, held_out), batch_size, train=False, seed=seed)
    for batch in loader:
        sample.update(model(batch["image"].to(device)), batch["label"])
    return fit_temperature(sample.logits, sample.labels)


def _json_list(values: torch.Tensor) -> list[float | None]:
    return [None if v != v else float(v) for v in values.tolist()]


class CalibrationTotals:
    """The accumulators of one radius: at T = 1 and, with temperature scaling, at the scaled T."""

    def __init__(self, num_classes: int, temperature: float | None):
        self.accumulators = {UNSCALED: CalibrationAccumulator(num_classes, NUM_BINS)}
        if temperature is not None:
            self.accumulators[SCALED] = CalibrationAccumulator(num_classes, NUM_BINS, temperature)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        for accumulator in self.accumulators.values():
            accumulator.update(logits, labels)

    def state_dict(self) -> dict:
        return {name: accumulator.state_dict() for name, accumulator in self.accumulators.items()}

    def merge(self, other: "CalibrationTotals") -> None:
        for name, accumulator in self.accumulators.items():
            accumulator.merge(other.accumulators[name])

    @classmethod
    def from_state(cls, state: dict) -> "CalibrationTotals":
        totals = cls.__new__(cls)
        totals.accumulators = {name: CalibrationAccumulator.from_state_dict(s) for name, s in state.items()}
        return totals

    def summary(self) -> dict:
        """Metrics per temperature, and the dataset-level reliability bins per temperature (for the diagrams)."""
        entry = {}
        for name, accumulator in self.accumulators.items():
            bins = accumulator.reliability_bins()
            entry[name] = {**accumulator.compute(), "temperature": accumulator.temperature,
                           "reliability": {"edges": bins.edges.tolist(), "counts": bins.counts.tolist(),
                                           "confidence": _json_list(bins.confidence),
                                           "accuracy": _json_list(bins.accuracy)}}
        return entry


def reliability_bins_of(entry: dict) -> ReliabilityBins:
    """`ReliabilityBins` back from the ``reliability`` entry of a summary (None = empty bin)."""
    def tensor(values):
        return torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float64)

    reliability = entry["reliability"]
    return ReliabilityBins(edges=tensor(reliability["edges"]), counts=tensor(reliability["counts"]),
                           confidence=tensor(reliability["confidence"]), accuracy=tensor(reliability["accuracy"]))


def calibration_markdown(calibration: dict, model: str) -> str:
    """Per radius and temperature: ECE, AECE, CWCE (%) and NLL in both conventions; Table V-1 layout with TS
    (``calibration``: the ``calibration`` entry of the results, ``model``: the model's name for the table)."""
    lines = ["## Calibration (labelled pixels of the returned images; worst case under attack)", "",
             "`dataset`: one pool of all pixels of the dataset; `image mean`: per image, then averaged. "
             f"ECE with {calibration['bins']} equal-width bins, AECE with {calibration['bins']} equal-mass bins; "
             "ECE/AECE/CWCE in %, NLL in nats.", "",
             "| eps | T | ECE | AECE | CWCE | NLL | ECE (image mean) | AECE (image mean) | CWCE (image mean) "
             "| NLL (image mean) |", "|---|---:|" + "---:|" * 8]
    for key, entry in calibration["radii"].items():
        for name, metrics in entry.items():
            cells = [f"{100 * metrics[f'{m}_{c}']:.2f}" if m != "nll" else f"{metrics[f'{m}_{c}']:.3f}"
                     for c in CONVENTIONS for m in METRICS]
            lines.append(f"| {key} | {metrics['temperature']:.3g} | " + " | ".join(cells) + " |")
    if calibration["temperature"] is not None:
        table = {f"{model} @ eps {key}": (entry[UNSCALED], entry[SCALED], entry[SCALED]["temperature"])
                 for key, entry in calibration["radii"].items()}
        lines += ["", f"Temperature scaling (thesis Table V-1 layout; T {calibration['temperature_source']}), "
                  "dataset-level ECE in %:", "", temperature_scaling_table(table, "ece_dataset"), "",
                  "Same, per-image-averaged ECE in %:", "", temperature_scaling_table(table, "ece_image_mean")]
    return "\n".join(lines) + "\n"


def reliability_file_name(key: str, name: str) -> str:
    """``reliability_<eps>[_ts].png`` with the radius' slash spelled out ('8/255' -> '8_255')."""
    return f"reliability_eps{key.replace('/', '_')}{'_ts' if name == SCALED else ''}.png"


def write_calibration_reports(calibration: dict, run_dir: Path, logger) -> None:
    """Reliability diagram PNG per radius (and per temperature); W&B table, images and summary."""
    rows = []
    for key, entry in calibration["radii"].items():
        for name, metrics in entry.items():
            path = run_dir / reliability_file_name(key, name)
            plot_reliability_diagram(reliability_bins_of(metrics), path, title=f"eps {key}, T = "
                                     f"{metrics['temperature']:.3g}: ECE {100 * metrics['ece_dataset']:.2f}%")
            logger.image(f"reliability@{key}" + ("/ts" if name == SCALED else ""), path)
            rows.append([key, metrics["temperature"]] + [metrics[f"{m}_{c}"] for c in CONVENTIONS for m in METRICS])
    logger.table("calibration", ["eps", "T"] + [f"{m}_{c}" for c in CONVENTIONS for m in METRICS], rows)
    logger.summary({f"calibration/{metric}@{key}" + ("/ts" if name == SCALED else ""): entry[name][metric]
                    for key, entry in calibration["radii"].items() for name in entry
                    for metric in ("ece_dataset", "ece_image_mean", "aece_dataset", "nll_dataset")})


class EvaluationCalibration:
    """What the driver keeps for ``calibration=true``: the temperature and one `CalibrationTotals` per radius."""

    def __init__(self, num_classes: int, temperature: float | None, temperature_source: str | None,
                 totals: dict[str, CalibrationTotals] | None = None):
        self.num_classes = num_classes
        self.temperature = temperature
        self.temperature_source = temperature_source
        self.totals = totals or {}

    @classmethod
    def start(cls, cfg, model, device, state: dict | None) -> "EvaluationCalibration | None":
        """None without ``cfg.calibration``; from the saved ``state`` on resume (no refit), else fit T if asked."""
        if not cfg.calibration:
            return None
        if state is not None:
            return cls.from_state(state)
        requested = parse_temperature(cfg.calibration_temperature)
        temperature, source = requested, None
        if requested == "fit":
            temperature = fit_holdout_temperature(
                model, cfg.dataset, fraction=cfg.calibration_holdout_fraction, seed=cfg.calibration_holdout_seed,
                batch_size=cfg.batch_size, device=device)
            source = (f"fitted on {100 * cfg.calibration_holdout_fraction:g}% of the training split held out "
                      f"with seed {cfg.calibration_holdout_seed}")
        elif requested is not None:
            source = "given"
        return cls(cfg.dataset.num_classes, temperature, source)

    @torch.no_grad()
    def update(self, key: str, model, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One forward on the images the attack returned at radius ``key``, into that radius' accumulators."""
        totals = self.totals.setdefault(key, CalibrationTotals(self.num_classes, self.temperature))
        totals.update(model(images), labels)

    def merge(self, other: "EvaluationCalibration") -> None:
        """Add another shard's accumulators (same temperature: fitted on the same held-out split)."""
        for key, totals in other.totals.items():
            if key in self.totals:
                self.totals[key].merge(totals)
            else:
                self.totals[key] = totals

    @classmethod
    def from_state(cls, state: dict) -> "EvaluationCalibration":
        return cls(state["num_classes"], state["temperature"], state["temperature_source"],
                   {key: CalibrationTotals.from_state(s) for key, s in state["totals"].items()})

    def state_dict(self) -> dict:
        return {"num_classes": self.num_classes, "temperature": self.temperature,
                "temperature_source": self.temperature_source,
                "totals": {key: totals.state_dict() for key, totals in self.totals.items()}}

    def summary(self) -> dict:
        return {"bins": NUM_BINS, "temperature": self.temperature, "temperature_source": self.temperature_source,
                "radii": {key: totals.summary() for key, totals in self.totals.items()}}
