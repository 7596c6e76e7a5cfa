"""Calibration metrics of the CALS experiments (thesis 6.5.1, eq. 6.14; Appendix V.3, V.5).

Every metric is computed over labelled pixels only (``IGNORE_INDEX`` never counts)
from logits and labels, so it applies equally to clean and adversarial images.
Values are fractions in [0, 1] (the thesis' tables print them in %). With ``s``
the softmax, the confidence of a pixel is ``max_k s_k`` and it is correct when the
arg-max equals the label.

- ECE (6.14): M = 15 equal-width bins ``((m-1)/M, m/M]`` of confidence (confidence
  exactly 0 goes to the first bin), ``sum_m |B_m|/N |acc_m - conf_m|``.
- AECE: the same with M equal-mass bins: pixels sorted by confidence, the pixel of
  rank r (0-based) among n goes to bin ``floor(r M / n)``.
- CWCE (class-wise ECE, Kull et al. 2019; Maier-Hein et al. 2022):
  ``(1/K) sum_k sum_m |B_km|/N |freq_km - conf_km|`` where, for class k, every
  pixel is binned by ``s_k`` (equal-width bins), ``conf_km`` is the mean ``s_k`` and
  ``freq_km`` the fraction of pixels labelled k in the bin.
- NLL: mean of ``-log s_y``.

Two conventions of the literature, both reported with explicit names:

- ``*_dataset``: one pool of all labelled pixels of the dataset (bin statistics
  accumulated over the whole dataset);
- ``*_image_mean``: the metric of each image over its own pixels, averaged over
  images (the public CALS code reports ECE this way); images without any labelled
  pixel are skipped.

Dataset-level AECE needs quantiles of the confidences of the whole dataset, which no single pass can stream
exactly in fixed memory. Method: a fine histogram of the confidence (``ADAPTIVE_GRID_BINS`` = 2^16 bins of
``t = -log2(1 - confidence)`` on [0, 24], the float32 resolution near 1; confidence exactly 1 has its own last
bin) accumulates per fine bin the count, confidence sum, correct count and the smallest and largest confidence.
The equal-mass bins (ranks ``[ceil(b n / M), ceil((b + 1) n / M))``) are formed on the cumulative counts; a fine
bin across a boundary is split in proportion to the counts. Tie rule (documented, deterministic): pixels of
equal confidence are exchangeable, so a boundary inside a group of equal confidences splits its count,
confidence sum and correct count in proportion (an order among tied pixels would be arbitrary). Under this rule
the result is exact whenever every fine bin across a boundary holds a single confidence value (ties, and in
practice the over-confident pixels near 1). Otherwise ``aece_dataset_bound`` states how far it can be from the
exact value: for each such fine bin, with ``a`` / ``b`` of its ``c`` pixels left / right of the boundary, ``k``
correct and confidences spread over ``[lo, hi]``, moving pixels between the two bins changes the sum by at most
``2 (a (hi - lo) + min(a, b, k, c - k)) / n`` (tested against a direct sort on ties, one distinct value and
over 10^6 pixels). Per-image AECE is exact (per-image stable sort: ties in pixel order).

All statistics are float64 sums, kept on the device of the logits, so
`CalibrationAccumulator.all_reduce` makes a distributed evaluation equal to a
single-process one. Memory per `update`: a few float64 copies of the (B, K, H*W)
probabilities (class-wise bins); lower the batch size for very large images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F

from robust_seg import IGNORE_INDEX
from robust_seg.errors import NonFiniteLogits, RobustSegError


class CalibrationInputError(RobustSegError):
    """A calibration computation got inputs it cannot use (e.g. no labelled pixel)."""

ADAPTIVE_GRID_BINS = 1 << 18
"""Fine bins for dataset-level AECE: half uniform in the confidence on [0, 0.5), half uniform in
``-log2(1 - confidence)`` on [1, 24] (the float32 resolution near 1), and one for confidence exactly 1."""
ADAPTIVE_GRID_RANGE = 24.0


def equal_width_bin(values: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Index m - 1 of the bin ``((m-1)/M, m/M]`` holding each value of [0, 1]."""
    return (torch.ceil(values * num_bins).long() - 1).clamp(0, num_bins - 1)


def calibration_error(counts: torch.Tensor, confidence_sums: torch.Tensor, correct_sums: torch.Tensor) -> float:
    """``sum_m |B_m|/N |acc_m - conf_m| = sum_m |sum conf - sum correct| / N`` over bins (last dim)."""
    total = float(counts.sum())
    return float((confidence_sums - correct_sums).abs().sum()) / total if total > 0 else float("nan")


@dataclass
class ReliabilityBins:
    """Equal-width bins of a reliability diagram (Appendix V.5); NaN accuracy/confidence in empty bins."""

    edges: torch.Tensor  # (M + 1,)
    counts: torch.Tensor  # (M,)
    confidence: torch.Tensor  # (M,) mean confidence
    accuracy: torch.Tensor  # (M,)

    @classmethod
    def from_statistics(cls, statistics: torch.Tensor) -> "ReliabilityBins":
        counts, confidence_sums, correct_sums = statistics.cpu()
        empty = torch.full_like(counts, float("nan"))
        nonempty = counts > 0
        return cls(
            edges=torch.linspace(0, 1, counts.numel() + 1, dtype=torch.float64),
            counts=counts,
            confidence=torch.where(nonempty, confidence_sums / counts.clamp_min(1), empty),
            accuracy=torch.where(nonempty, correct_sums / counts.clamp_min(1), empty),
        )


class CalibrationAccumulator:
    """Streaming ECE / AECE / CWCE / NLL over a dataset, both conventions (module doc).

    ``update(logits, labels)`` with logits (B, K, *spatial) (or (N, K) with labels
    (N,), each row then being its own 'image') and labels (B, *spatial);
    ``compute()`` returns a dict of floats. ``temperature`` divides the logits first
    (post-hoc temperature scaling).
    """

    def __init__(self, num_classes: int, num_bins: int = 15, temperature: float = 1.0):
        self.num_classes = num_classes
        self.num_bins = num_bins
        self.temperature = float(temperature)
        self.bins = torch.zeros(3, num_bins, dtype=torch.float64)
        """Dataset ECE bins: count, confidence sum, correct count."""
        self.class_bins = torch.zeros(2, num_classes, num_bins, dtype=torch.float64)
        """Dataset CWCE bins per class: probability sum, label count."""
        self.adaptive_grid = self._empty_grid(torch.device("cpu"))
        """Fine histogram for dataset AECE (module doc): count, confidence sum, correct count, min, max confidence."""
        self.totals = torch.zeros(3, dtype=torch.float64)
        """Dataset sums: NLL, labelled pixels, correct pixels."""
        self.image_sums = torch.zeros(5, dtype=torch.float64)
        """Sums over images of per-image ECE, AECE, CWCE, NLL, and the number of images."""

    _STATE = ("bins", "class_bins", "adaptive_grid", "totals", "image_sums")

    def _state(self) -> list[torch.Tensor]:
        return [getattr(self, name) for name in self._STATE]

    def to(self, device: torch.device) -> "CalibrationAccumulator":
        """Move the statistics to ``device`` (done on first `update` with logits there)."""
        for name in self._STATE:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def state_dict(self) -> dict:
        """Plain CPU tensors and numbers (``torch.load(weights_only=True)`` reads them back)."""
        dense = {name: getattr(self, name).cpu() for name in self._STATE if name != "adaptive_grid"}
        used = torch.nonzero(self.adaptive_grid[0] > 0).flatten().cpu()  # the fine grid is sparse: store used bins
        return {"num_classes": self.num_classes, "num_bins": self.num_bins, "temperature": self.temperature,
                **dense, "adaptive_grid_used": used, "adaptive_grid_values": self.adaptive_grid.cpu()[:, used]}

    @classmethod
    def from_state_dict(cls, state: Mapping) -> "CalibrationAccumulator":
        accumulator = cls(state["num_classes"], state["num_bins"], state["temperature"])
        for name in cls._STATE:
            if name != "adaptive_grid":
                setattr(accumulator, name, state[name].to(torch.float64).clone())
        accumulator.adaptive_grid[:, state["adaptive_grid_used"]] = state["adaptive_grid_values"].to(torch.float64)
        return accumulator

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if logits.dim() == 2:
            logits, labels = logits.unsqueeze(-1), labels.unsqueeze(-1)
        num_classes = logits.shape[1]
        device = logits.device
        if self.bins.device != device:
            self.to(device)
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteLogits("calibration metrics: the logits hold NaN or infinite values")
        precision = torch.float64 if logits.dtype == torch.float64 else torch.float32  # the caller's, at least float32
        log_probabilities = F.log_softmax(logits.to(precision).flatten(2) / self.temperature, dim=1)  # (B, K, P)
        labels = labels.flatten(1)
        labelled = labels != IGNORE_INDEX
        weights = labelled.to(log_probabilities.dtype)
        targets = torch.where(labelled, labels, torch.zeros_like(labels)).long()
        top_log_probability, predictions = log_probabilities.max(dim=1)
        confidences = top_log_probability.exp()
        correct = (predictions == targets).float() * weights
        pixels = weights.sum(1)

        # equal-width confidence bins per image: (3, B, M)
        image_bins = self._per_image_bins(equal_width_bin(confidences, self.num_bins), [weights, confidences * weights, correct], self.num_bins)
        # equal-mass confidence bins per image, exact: sort, unlabelled pixels last
        order = torch.argsort(torch.where(labelled, confidences, torch.full_like(confidences, 2.0)), dim=1, stable=True)
        ranks = torch.arange(labels.shape[1], device=device).expand_as(order)
        ranked_weights = torch.gather(weights, 1, order)
        adaptive_index = (ranks * self.num_bins // pixels.long().clamp_min(1).unsqueeze(1)).clamp(max=self.num_bins - 1)
        image_adaptive_bins = self._per_image_bins(
            adaptive_index, [ranked_weights, torch.gather(confidences * weights, 1, order), torch.gather(correct, 1, order)], self.num_bins
        )
        # class-wise bins per image: (2, B, K, M)
        probabilities = log_probabilities.exp()
        one_hot = torch.zeros_like(probabilities).scatter_(1, targets.unsqueeze(1), weights.unsqueeze(1))
        image_class_bins = self._per_image_bins(
            equal_width_bin(probabilities, self.num_bins), [probabilities * weights.unsqueeze(1), one_hot], self.num_bins
        )
        negative_log_likelihood = -log_probabilities.gather(1, targets.unsqueeze(1)).squeeze(1) * weights

        has_pixels = pixels > 0
        denominator = pixels.double().clamp_min(1)
        image_ece = (image_bins[1] - image_bins[2]).abs().sum(-1) / denominator
        image_aece = (image_adaptive_bins[1] - image_adaptive_bins[2]).abs().sum(-1) / denominator
        image_cwce = (image_class_bins[0] - image_class_bins[1]).abs().sum((-1, -2)) / (num_classes * denominator)
        image_nll = negative_log_likelihood.double().sum(1) / denominator
        per_image = torch.stack([image_ece, image_aece, image_cwce, image_nll, torch.ones_like(image_nll)])
        batch_image_sums = (per_image * has_pixels).sum(1)

        grid_index = self._adaptive_grid_index(confidences).flatten()
        grid_values = torch.stack([weights, confidences * weights, correct]).flatten(1).double()
        self.adaptive_grid[:3].index_add_(1, grid_index, grid_values)
        labelled_index, labelled_confidence = grid_index[labelled.flatten()], confidences.flatten()[labelled.flatten()].double()
        self.adaptive_grid[3].scatter_reduce_(0, labelled_index, labelled_confidence, reduce="amin")
        self.adaptive_grid[4].scatter_reduce_(0, labelled_index, labelled_confidence, reduce="amax")
        batch_totals = torch.stack([negative_log_likelihood.double().sum(), pixels.double().sum(), correct.double().sum()])

        for state, increment in zip(
            [self.bins, self.class_bins, self.totals, self.image_sums],
            [image_bins.sum(1), image_class_bins.sum(1), batch_totals, batch_image_sums]
        ):
            state += increment

    @staticmethod
    def _per_image_bins(index: torch.Tensor, values: list[torch.Tensor], num_bins: int) -> torch.Tensor:
        """Scatter per-pixel ``values`` (each shaped like ``index``: (B, *, P)) into (len(values), B, *, M) float64 sums."""
        shape = index.shape[:-1]
        flat_index = (torch.arange(math.prod(shape), device=index.device).view(*shape, 1) * num_bins + index).flatten()
        stacked = torch.stack([value.flatten() for value in values]).double()
        sums = torch.zeros(len(values), math.prod(shape) * num_bins, dtype=torch.float64, device=index.device)
        return sums.index_add_(1, flat_index, stacked).view(len(values), *shape, num_bins)

    @staticmethod
    def _empty_grid(device: torch.device) -> torch.Tensor:
        grid = torch.zeros(5, ADAPTIVE_GRID_BINS, dtype=torch.float64, device=device)
        grid[3], grid[4] = math.inf, -math.inf
        return grid

    @staticmethod
    def _adaptive_grid_index(confidences: torch.Tensor) -> torch.Tensor:
        """Fine-histogram index of a confidence, non-decreasing in it (confidence 1: the last bin)."""
        half = ADAPTIVE_GRID_BINS // 2
        c = confidences.double().clamp(0, 1)
        t = -torch.log2(1 - c)  # inf at confidence 1
        low = (c * 2 * half).floor().clamp(0, half - 1)
        high = half + ((t - 1) / (ADAPTIVE_GRID_RANGE - 1) * (half - 1)).floor().clamp(0, half - 2)
        index = torch.where(c < 0.5, low, high)
        return index.where(torch.isfinite(t), torch.full_like(index, ADAPTIVE_GRID_BINS - 1)).long()

    def all_reduce(self) -> None:
        """Sum the statistics over ranks (call on every rank before `compute` in a distributed evaluation)."""
        if dist.is_available() and dist.is_initialized():
            for state in [self.bins, self.class_bins, self.totals, self.image_sums, self.adaptive_grid[:3]]:
                reduced = state.contiguous()
                dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
                state.copy_(reduced)
            for row, op in ((3, dist.ReduceOp.MIN), (4, dist.ReduceOp.MAX)):
                reduced = self.adaptive_grid[row].contiguous()
                dist.all_reduce(reduced, op=op)
                self.adaptive_grid[row].copy_(reduced)

    def merge(self, other: "CalibrationAccumulator") -> None:
        """Add the statistics of ``other`` (another shard of the same evaluation): the result equals one pass over
        both shards' pixels."""
        for name in ("bins", "class_bins", "totals", "image_sums"):
            getattr(self, name).add_(getattr(other, name).to(getattr(self, name).device))
        grid = other.adaptive_grid.to(self.adaptive_grid.device)
        self.adaptive_grid[:3].add_(grid[:3])
        torch.minimum(self.adaptive_grid[3], grid[3], out=self.adaptive_grid[3])
        torch.maximum(self.adaptive_grid[4], grid[4], out=self.adaptive_grid[4])

    def _dataset_adaptive_error(self) -> tuple[float, float]:
        """Dataset AECE and the bound on its distance to the exact value (module doc)."""
        counts, confidence_sums, correct_sums, smallest, largest = self.adaptive_grid.cpu()
        total = float(counts.sum())
        if total == 0:
            return float("nan"), float("nan")
        upper = counts.cumsum(0)
        lower = upper - counts
        # ranks r with floor(r M / n) = b are those in [ceil(b n / M), ceil((b + 1) n / M))
        bin_bounds = ((torch.arange(self.num_bins + 1) * int(round(total)) + self.num_bins - 1) // self.num_bins).double()
        overlap = (torch.minimum(upper, bin_bounds[1:, None]) - torch.maximum(lower, bin_bounds[:-1, None])).clamp_min(0)
        share = overlap / counts.clamp_min(1e-300)  # (M, fine bins): fraction of each fine bin in each bin
        value = calibration_error(overlap.sum(1), share @ confidence_sums, share @ correct_sums)
        bound = 0.0
        for boundary in bin_bounds[1:-1].tolist():
            inside = torch.nonzero((lower < boundary) & (upper > boundary)).flatten()
            for j in inside.tolist():  # at most one fine bin contains a boundary strictly
                spread = float(largest[j] - smallest[j])
                if spread > 0:
                    left, right, correct = boundary - float(lower[j]), float(upper[j]) - boundary, float(correct_sums[j])
                    bound += 2 * (left * spread + min(left, right, correct, float(counts[j]) - correct)) / total
        return value, bound

    def compute(self) -> dict[str, float]:
        nll_sum, pixels, correct = self.totals.tolist()
        ece, aece, cwce, nll, images = self.image_sums.tolist()
        class_probability_sums, class_label_sums = self.class_bins
        nan = float("nan")
        aece_dataset, aece_bound = self._dataset_adaptive_error()
        return {
            "ece_dataset": calibration_error(*self.bins),
            "aece_dataset": aece_dataset,
            "aece_dataset_bound": aece_bound,
            "cwce_dataset": float((class_probability_sums - class_label_sums).abs().sum()) / (self.num_classes * pixels) if pixels else nan,
            "nll_dataset": nll_sum / pixels if pixels else nan,
            "accuracy_dataset": correct / pixels if pixels else nan,
            "ece_image_mean": ece / images if images else nan,
            "aece_image_mean": aece / images if images else nan,
            "cwce_image_mean": cwce / images if images else nan,
            "nll_image_mean": nll / images if images else nan,
            "num_pixels": pixels,
            "num_images": images,
        }

    def reliability_bins(self) -> ReliabilityBins:
        """Dataset-level equal-width bins (as many as ``num_bins``; the thesis plots 25)."""
        return ReliabilityBins.from_statistics(self.bins)


def plot_reliability_diagram(bins: ReliabilityBins, path: str | Path, title: str | None = None) -> ReliabilityBins:
    """Save a reliability diagram (accuracy and gap to confidence per bin, diagonal) as PNG; returns ``bins``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 4), dpi=150)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    edges = bins.edges.numpy()
    width = edges[1:] - edges[:-1]
    accuracy = torch.nan_to_num(bins.accuracy).numpy()
    confidence = torch.nan_to_num(bins.confidence).numpy()
    axes.bar(edges[:-1], accuracy, width=width, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
    axes.bar(edges[:-1], confidence - accuracy, bottom=accuracy, width=width, align="edge", color="tab:red", alpha=0.3, edgecolor="tab:red", hatch="//", label="gap")
    axes.plot([0, 1], [0, 1], "--", color="red", label="perfect calibration")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(Path(path), format="png")
    return bins
