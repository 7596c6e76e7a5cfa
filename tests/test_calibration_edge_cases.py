"""Calibration and metric edge cases (issue: agreement with the papers): exact dataset AECE with ties and its
bound, NaN logits, no labelled pixel, float64 precision, labels outside 0..K-1, unlabelled images, CALS-HR edges."""
from __future__ import annotations

import pytest
import torch

from robust_seg import IGNORE_INDEX
from robust_seg.errors import RobustSegError
from robust_seg.metrics.calibration import CalibrationAccumulator
from robust_seg.metrics.temperature import fit_temperature


def sorted_aece(confidences: torch.Tensor, correct: torch.Tensor, num_bins: int = 15) -> float:
    """Direct computation: sort; ranks [ceil(b n / M), ceil((b+1) n / M)) form bin b; a group of equal confidences
    across a boundary is split in proportion (the documented tie rule)."""
    order = torch.argsort(confidences, stable=True)
    confidences, correct = confidences[order].double(), correct[order].double()
    n = confidences.numel()
    values, counts = torch.unique_consecutive(confidences, return_counts=True)
    ends = counts.cumsum(0)
    starts = ends - counts
    group_correct = torch.zeros(values.numel(), dtype=torch.float64).index_add_(
        0, torch.repeat_interleave(torch.arange(values.numel()), counts), correct)
    total = 0.0
    for b in range(num_bins):
        low, high = -(-b * n // num_bins), -(-(b + 1) * n // num_bins)
        overlap = (torch.clamp(ends, max=high) - torch.clamp(starts, min=low)).clamp_min(0).double()
        share = overlap / counts.double()
        total += abs(float((share * values * counts).sum() - (share * group_correct).sum()))
    return total / n


def _accumulate(confidence_logits: torch.Tensor, labels: torch.Tensor) -> dict:
    accumulator = CalibrationAccumulator(confidence_logits.shape[1])
    for index in range(confidence_logits.shape[0]):
        accumulator.update(confidence_logits[index: index + 1], labels[index: index + 1])
    return accumulator.compute()


def _reference(logits: torch.Tensor, labels: torch.Tensor) -> float:
    top, predictions = torch.log_softmax(logits.float(), 1).max(1)  # the metric's confidences: exp of log-softmax
    confidences = top.exp()
    labelled = labels != IGNORE_INDEX
    return sorted_aece(confidences[labelled], (predictions == labels)[labelled])


def test_dataset_aece_is_exact_with_many_ties():
    """Few distinct confidences, many pixels each, correctness mixed within every tie group."""
    generator = torch.Generator().manual_seed(0)
    levels = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0])
    logits = torch.zeros(4, 3, 30, 30)
    logits[:, 0] = levels[torch.randint(0, 5, (4, 30, 30), generator=generator)]
    labels = torch.randint(0, 3, (4, 30, 30), generator=generator)
    labels[0, :3] = IGNORE_INDEX
    metrics = _accumulate(logits, labels)
    assert metrics["aece_dataset_bound"] == 0
    assert metrics["aece_dataset"] == pytest.approx(_reference(logits, labels), abs=1e-12)


def test_dataset_aece_with_one_distinct_value():
    logits = torch.zeros(2, 4, 10, 10)  # every confidence 1/4
    labels = torch.randint(0, 4, (2, 10, 10), generator=torch.Generator().manual_seed(1))
    metrics = _accumulate(logits, labels)
    accuracy = float((labels == 0).double().mean())
    assert metrics["aece_dataset_bound"] == 0
    assert metrics["aece_dataset"] == pytest.approx(abs(0.25 - accuracy), abs=1e-12)
    assert metrics["aece_dataset"] == pytest.approx(_reference(logits, labels), abs=1e-12)


def test_dataset_aece_over_a_million_pixels_within_its_stated_bound():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 6, 512, 512, generator=generator) * torch.tensor([0.3, 1.0, 3.0, 8.0]).view(4, 1, 1, 1)
    labels = torch.distributions.Categorical(logits=logits.movedim(1, -1) / 1.3).sample()
    labels[:, :7] = IGNORE_INDEX
    assert int((labels != IGNORE_INDEX).sum()) > 1_000_000
    metrics = _accumulate(logits, labels)
    exact = _reference(logits, labels)
    assert abs(metrics["aece_dataset"] - exact) <= metrics["aece_dataset_bound"] + 1e-12
    assert metrics["aece_dataset_bound"] < 5e-4


def test_dataset_aece_bound_holds_on_a_crafted_worst_case():
    """Distinct confidences packed into one fine bin across a boundary, correct pixels first in rank order."""
    confidences = torch.tensor([0.3 + 1e-7 * i for i in range(64)])
    logits = torch.stack([torch.log(confidences), torch.log((1 - confidences) / 2), torch.log((1 - confidences) / 2)])
    logits = logits.view(1, 3, 8, 8)
    labels = torch.where(torch.arange(64) < 32, 0, 1).view(1, 8, 8)  # the 32 least confident are correct
    metrics = _accumulate(logits, labels)
    exact = _reference(logits, labels)
    assert metrics["aece_dataset_bound"] > 0
    assert abs(metrics["aece_dataset"] - exact) <= metrics["aece_dataset_bound"] + 1e-12


def test_nan_logits_are_refused_with_one_line():
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 1, 2, 2] = float("nan")
    with pytest.raises(RobustSegError, match="NaN or infinite"):
        CalibrationAccumulator(3).update(logits, torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(RobustSegError, match="NaN or infinite"):
        fit_temperature(logits, torch.zeros(1, 4, 4, dtype=torch.long))


def test_temperature_fit_without_labelled_pixels_is_refused():
    with pytest.raises(RobustSegError, match="no labelled pixel"):
        fit_temperature(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), IGNORE_INDEX))


def test_float64_logits_keep_their_precision():
    """Differences below float32 resolution change the NLL in float64 and are kept."""
    logits = torch.zeros(1, 2, 1, 1, dtype=torch.float64)
    logits[0, 0] = 1e-9
    labels = torch.zeros(1, 1, 1, dtype=torch.long)
    accumulator = CalibrationAccumulator(2)
    accumulator.update(logits, labels)
    expected = float(torch.nn.functional.cross_entropy(logits.flatten(2), labels.flatten(1)))
    assert accumulator.compute()["nll_dataset"] == pytest.approx(expected, rel=0, abs=1e-15)
    assert expected != pytest.approx(float(torch.log(torch.tensor(2.0))), rel=0, abs=1e-12)


def test_confusion_matrix_names_a_label_outside_the_classes():
    from robust_seg.metrics.segmentation import confusion_matrix

    labels = torch.tensor([[0, 1, 7, IGNORE_INDEX]])
    with pytest.raises(ValueError, match=r"label value 7 is outside 0\.\.5 \(K = 6\)"):
        confusion_matrix(torch.zeros_like(labels), labels, 6)
    assert int(confusion_matrix(torch.zeros(1, 3, dtype=torch.long), torch.tensor([[0, 1, IGNORE_INDEX]]), 2).sum()) == 2


def test_images_without_labelled_pixels_are_left_out_of_acc_and_counted():
    from robust_seg.evaluation.results import ComponentResult
    from robust_seg.evaluation.state import ComponentTotals
    labels = torch.tensor([[[0, 1], [1, 1]], [[IGNORE_INDEX] * 2] * 2])
    predictions = torch.tensor([[[0, 1], [0, 0]], [[1, 1], [1, 1]]])
    totals = ComponentTotals(torch.zeros(2, 2, dtype=torch.long))
    totals.add(predictions, labels, {})
    summary = ComponentResult.from_totals(totals, ["a", "b"])
    assert summary.acc == pytest.approx(50.0) and summary.unlabelled_images == 1
    assert summary.per_image_acc == [50.0, None]


def test_cals_hr_rule_6_15_at_the_rounding_edge_and_from_a_zero_penalty():
    """Eq. 6.15 with mu = tau = 1.1: strictly greater than tau x the other moves lambda; exactly tau x (as computed in
    floating point) keeps it; from an all-zero previous penalty any positive penalty raises lambda, zero keeps it."""
    from robust_seg.training.cals import HeuristicMultipliers

    rule = HeuristicMultipliers(6, initial_multiplier=1.0)
    previous = torch.tensor([0.3, 0.3, 1.1 * 0.3, 0.0, 0.0, 0.3], dtype=torch.float64)
    rule._apply_update(previous.unsqueeze(0), 0)
    new = torch.tensor([1.1 * 0.3, 0.3 / 1.1, 0.3, 0.0, 1e-12, 0.34], dtype=torch.float64)
    rule._apply_update(new.unsqueeze(0), 1)
    # [= tau x: keep, tau x new = old exactly? 1.1 * (0.3 / 1.1) rounds to 0.3: keep, old = tau x new: keep,
    #  0 -> 0: keep, 0 -> positive: up, 0.34 > 0.33: up]
    expected = []
    for old, value in zip(previous.tolist(), new.tolist()):
        if value > 1.1 * old:
            expected.append(1.1)
        elif old > 1.1 * value:
            expected.append(1 / 1.1)
        else:
            expected.append(1.0)
    assert expected[0] == 1.0 and expected[2] == 1.0 and expected[3] == 1.0 and expected[4] == 1.1 and expected[5] == 1.1
    torch.testing.assert_close(rule.multipliers, torch.tensor(expected, dtype=torch.float64))
