"""Post-hoc temperature scaling (Guo et al. 2017; thesis Table V-1): a streaming sample of labelled pixels' logits,
the temperature fit on it, and the table of calibration before and after."""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from robust_seg import IGNORE_INDEX
from robust_seg.metrics.calibration import CalibrationInputError, NonFiniteLogits


class LabelledPixelSample:
    """Uniform random sample (without replacement) of at most ``max_pixels`` labelled pixels' logits.

    Streaming over a dataset: each labelled pixel receives a random key and the
    ``max_pixels`` smallest keys are kept, so the memory stays (max_pixels, K).
    Used to fit the temperature on the validation split.
    """

    def __init__(self, max_pixels: int = 1_000_000, seed: int = 0):
        self.max_pixels = max_pixels
        self.generator = torch.Generator().manual_seed(seed)
        self.logits: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self._keys: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        flat_logits = logits.detach().float().movedim(1, -1).reshape(-1, logits.shape[1]).cpu()
        flat_labels = labels.reshape(-1).cpu()
        labelled = flat_labels != IGNORE_INDEX
        flat_logits, flat_labels = flat_logits[labelled], flat_labels[labelled]
        keys = torch.rand(flat_labels.numel(), generator=self.generator)
        if self.logits is not None:
            flat_logits = torch.cat([self.logits, flat_logits])
            flat_labels = torch.cat([self.labels, flat_labels])
            keys = torch.cat([self._keys, keys])
        if keys.numel() > self.max_pixels:
            keep = torch.topk(keys, self.max_pixels, largest=False).indices
            flat_logits, flat_labels, keys = flat_logits[keep], flat_labels[keep], keys[keep]
        self.logits, self.labels, self._keys = flat_logits, flat_labels, keys


def temperature_nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean NLL of labelled rows of (N, K) logits divided by ``temperature``."""
    return float(F.cross_entropy(logits.double() / temperature, labels.long(), ignore_index=IGNORE_INDEX))


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, *, bounds: tuple[float, float] = (0.05, 20.0), tolerance: float = 1e-6
) -> float:
    """Post-hoc temperature scaling (Guo et al. 2017): argmin over T > 0 of the NLL of ``logits / T``.

    ``logits`` (N, K) with labels (N,), or (B, K, *spatial) with labels (B, *spatial);
    unlabelled pixels are dropped. The NLL is convex in 1/T (log-sum-exp of linear
    functions), hence unimodal in log T: golden-section search on log T within
    ``bounds`` down to ``tolerance`` (an optimum on a bound means the bound is binding).
    """
    if logits.dim() > 2:
        logits = logits.movedim(1, -1).reshape(-1, logits.shape[1])
        labels = labels.reshape(-1)
    labelled = labels != IGNORE_INDEX
    logits, labels = logits[labelled].double(), labels[labelled]
    if labels.numel() == 0:
        raise CalibrationInputError("temperature fit: no labelled pixel (every label is the ignore index "
                                    f"{IGNORE_INDEX}); fit on images with labels")
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteLogits("temperature fit: the logits hold NaN or infinite values")
    low, high = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    left_value, right_value = temperature_nll(logits, labels, math.exp(left)), temperature_nll(logits, labels, math.exp(right))
    while high - low > tolerance:
        if left_value <= right_value:
            high, right, right_value = right, left, left_value
            left = high - ratio * (high - low)
            left_value = temperature_nll(logits, labels, math.exp(left))
        else:
            low, left, left_value = left, right, right_value
            right = low + ratio * (high - low)
            right_value = temperature_nll(logits, labels, math.exp(right))
    return math.exp((low + high) / 2)


def temperature_scaling_table(
    results: Mapping[str, tuple[Mapping[str, float], Mapping[str, float], float]], metric: str = "ece_dataset"
) -> str:
    """Table V-1 layout (markdown): method, ``metric`` in % before TS, after TS with the fitted T.

    ``results[method] = (metrics_before, metrics_after, temperature)``, the metric dicts
    being `CalibrationAccumulator.compute` outputs on the test split with T = 1 and T fitted.
    """
    lines = ["| Method | Pre-TS | Post-TS (T) |", "|---|---|---|"]
    for method, (before, after, temperature) in results.items():
        lines.append(f"| {method} | {100 * before[metric]:.2f} | {100 * after[metric]:.2f} ({temperature:.1f}) |")
    return "\n".join(lines)
