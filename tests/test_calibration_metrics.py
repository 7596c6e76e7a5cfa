"""Calibration metrics: hand-computed values, reference loops, calibrated predictors, temperature scaling."""
import math

import pytest
import torch

from robust_seg import IGNORE_INDEX
from robust_seg.metrics.calibration import CalibrationAccumulator, calibration_error, plot_reliability_diagram
from robust_seg.metrics.temperature import LabelledPixelSample, fit_temperature, temperature_scaling_table
from tests.conftest import calibration_metrics


def adaptive_calibration_error(confidences: torch.Tensor, correct: torch.Tensor, num_bins: int = 15) -> float:
    """The exact AECE of flat confidences (one pool, sorted in memory): rank r of n in bin ``floor(r M / n)``; the
    reference the accumulator's histogram AECE is checked against."""
    order = torch.argsort(confidences.flatten(), stable=True)
    count = order.numel()
    index = torch.arange(count, device=order.device) * num_bins // max(count, 1)
    values = torch.stack([torch.ones(count, device=order.device), confidences.flatten()[order], correct.flatten()[order]]).double()
    return calibration_error(*torch.zeros(3, num_bins, dtype=torch.float64, device=order.device).index_add_(1, index, values))

# One image of 1 x 5 pixels, 2 classes: (probabilities, label); the last pixel is unlabelled.
HAND_PIXELS = [([0.9, 0.1], 0), ([0.08, 0.92], 0), ([0.3, 0.7], 1), ([0.62, 0.38], 1), ([0.99, 0.01], IGNORE_INDEX)]


def hand_batch():
    probabilities = torch.tensor([p for p, _ in HAND_PIXELS], dtype=torch.float64)
    logits = probabilities.log().T.reshape(1, 2, 1, 5)
    labels = torch.tensor([y for _, y in HAND_PIXELS]).reshape(1, 1, 5)
    return logits, labels


def test_hand_computed_values():
    logits, labels = hand_batch()
    metrics = calibration_metrics(logits, labels)
    # 15 bins: {0.9 correct, 0.92 wrong} share bin 13; 0.7 correct in bin 10; 0.62 wrong in bin 9.
    ece = 2 / 4 * abs(0.5 - 0.91) + 1 / 4 * abs(1 - 0.7) + 1 / 4 * abs(0 - 0.62)
    assert metrics["ece_dataset"] == pytest.approx(ece) and metrics["ece_image_mean"] == pytest.approx(ece)
    # 15 equal-mass bins of 4 pixels: one pixel per bin -> mean |correct - confidence|.
    assert metrics["aece_dataset"] == pytest.approx((0.62 + 0.3 + 0.1 + 0.92) / 4)
    assert metrics["aece_image_mean"] == pytest.approx((0.62 + 0.3 + 0.1 + 0.92) / 4)
    # class-wise: every (class, pixel) in its own bin; class 0: |s_0 - [y = 0]| = 0.1, 0.92, 0.3, 0.62 (same for class 1)
    assert metrics["cwce_dataset"] == pytest.approx(1.94 / 4) and metrics["cwce_image_mean"] == pytest.approx(1.94 / 4)
    nll = -(math.log(0.9) + math.log(0.08) + math.log(0.7) + math.log(0.38)) / 4
    assert metrics["nll_dataset"] == pytest.approx(nll, rel=1e-6)
    assert metrics["accuracy_dataset"] == 0.5 and metrics["num_pixels"] == 4 and metrics["num_images"] == 1


def test_hand_computed_adaptive_with_two_bins():
    logits, labels = hand_batch()
    metrics = calibration_metrics(logits, labels, num_bins=2)
    # sorted confidences 0.62 (wrong), 0.7 (correct) | 0.9 (correct), 0.92 (wrong)
    expected = 2 / 4 * abs(0.5 - 0.66) + 2 / 4 * abs(0.5 - 0.91)
    assert metrics["aece_dataset"] == pytest.approx(expected) and metrics["aece_image_mean"] == pytest.approx(expected)


def test_unlabelled_pixels_do_not_count():
    logits, labels = hand_batch()
    altered = logits.clone()
    altered[0, :, 0, 4] = torch.tensor([-50.0, 50.0])
    assert calibration_metrics(altered, labels) == calibration_metrics(logits, labels)


def reference_metrics(probabilities, labels, num_bins):
    """Loop implementation over images, bins and classes (Python floats)."""
    per_image = {"ece": [], "cwce": [], "nll": []}
    pooled = []  # (probabilities row, label)
    for image_probabilities, image_labels in zip(probabilities, labels):
        pixels = [
            (image_probabilities.flatten(1)[:, index].tolist(), int(label))
            for index, label in enumerate(image_labels.flatten().tolist())
            if label != IGNORE_INDEX
        ]
        if not pixels:
            continue
        pooled += pixels
        for name, value in reference_single(pixels, num_bins).items():
            per_image[name].append(value)
    means = {f"{name}_image_mean": sum(values) / len(values) for name, values in per_image.items()}
    return {**{f"{name}_dataset": value for name, value in reference_single(pooled, num_bins).items()}, **means}


def reference_single(pixels, num_bins):
    def bin_of(value):
        return min(max(math.ceil(value * num_bins) - 1, 0), num_bins - 1)

    count = len(pixels)
    num_classes = len(pixels[0][0])
    bins = [[0, 0.0, 0.0] for _ in range(num_bins)]
    for probabilities, label in pixels:
        confidence = max(probabilities)
        prediction = probabilities.index(confidence)
        entry = bins[bin_of(confidence)]
        entry[0] += 1
        entry[1] += confidence
        entry[2] += prediction == label
    ece = sum(abs(s - c) for _, s, c in bins) / count
    cwce = 0.0
    for k in range(num_classes):
        class_bins = [[0.0, 0.0] for _ in range(num_bins)]
        for probabilities, label in pixels:
            entry = class_bins[bin_of(probabilities[k])]
            entry[0] += probabilities[k]
            entry[1] += label == k
        cwce += sum(abs(s - f) for s, f in class_bins) / count / num_classes
    nll = -sum(math.log(probabilities[label]) for probabilities, label in pixels) / count
    return {"ece": ece, "cwce": cwce, "nll": nll}


def test_vectorised_metrics_match_reference_loops_with_streaming():
    torch.manual_seed(0)
    logits = 3 * torch.randn(5, 4, 6, 7, dtype=torch.float64)
    labels = torch.randint(0, 4, (5, 6, 7))
    labels[1, :4] = IGNORE_INDEX
    labels[3] = IGNORE_INDEX  # an image without labelled pixel is skipped by the image mean
    accumulator = CalibrationAccumulator(4, num_bins=10)
    accumulator.update(logits[:2], labels[:2])  # streaming over two batches
    accumulator.update(logits[2:], labels[2:])
    metrics = accumulator.compute()
    expected = reference_metrics(logits.softmax(1), labels, 10)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert metrics["num_images"] == 4


def test_perfectly_calibrated_predictor_scores_about_zero_and_a_miscalibrated_one_does_not():
    torch.manual_seed(0)
    logits = 2.5 * torch.randn(8, 5, 100, 100)
    labels = torch.distributions.Categorical(logits=logits.movedim(1, -1)).sample()
    calibrated = calibration_metrics(logits, labels)
    assert calibrated["ece_dataset"] < 0.005 and calibrated["aece_dataset"] < 0.005
    assert calibrated["cwce_dataset"] < 0.005  # sampling noise of 15 bins x 5 classes on 80k pixels
    assert calibrated["ece_image_mean"] < 0.015
    over_confident = calibration_metrics(2 * logits, labels)
    assert over_confident["ece_dataset"] > 0.1 and over_confident["aece_dataset"] > 0.1 and over_confident["cwce_dataset"] > 0.02


def test_dataset_adaptive_histogram_is_close_to_exact():
    torch.manual_seed(1)
    # a spread of confidences from 1/K to extremely close to 1, labels from a tempered softmax
    logits = torch.randn(6, 10, 80, 80) * torch.logspace(-1, 1.5, 6).view(6, 1, 1, 1)
    labels = torch.distributions.Categorical(logits=logits.movedim(1, -1) / 1.5).sample()
    labels[:, :5] = IGNORE_INDEX
    accumulator = CalibrationAccumulator(10)
    for image in range(6):
        accumulator.update(logits[image : image + 1], labels[image : image + 1])
    probabilities = logits.softmax(1)
    confidences, predictions = probabilities.max(1)
    labelled = labels != IGNORE_INDEX
    exact = adaptive_calibration_error(confidences[labelled], (predictions == labels)[labelled])
    assert exact > 0.01
    assert accumulator.compute()["aece_dataset"] == pytest.approx(exact, abs=5e-4)


def test_temperature_argument_and_classification_layout():
    torch.manual_seed(2)
    logits = 4 * torch.randn(50, 6)
    labels = torch.randint(0, 6, (50,))
    labels[:3] = IGNORE_INDEX
    scaled = calibration_metrics(logits, labels, temperature=2.0)
    assert scaled == calibration_metrics(logits / 2.0, labels)
    assert scaled["num_images"] == 47  # each labelled row is one 'image'


@pytest.mark.parametrize("true_temperature", [0.7, 2.5])
def test_temperature_scaling_recovers_known_temperature(true_temperature):
    torch.manual_seed(3)
    logits = 3 * torch.randn(40000, 10)
    labels = torch.distributions.Categorical(logits=logits / true_temperature).sample()
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.03)


def test_temperature_scaling_on_segmentation_layout_improves_ece():
    torch.manual_seed(4)
    logits = 3 * torch.randn(4, 6, 40, 40)
    labels = torch.distributions.Categorical(logits=logits.movedim(1, -1) / 2.0).sample()
    labels[:, :10] = IGNORE_INDEX
    sample = LabelledPixelSample(max_pixels=3000, seed=0)
    for image in range(4):
        sample.update(logits[image : image + 1], labels[image : image + 1])
    temperature = fit_temperature(sample.logits, sample.labels)
    assert temperature == pytest.approx(2.0, rel=0.1)
    before = calibration_metrics(logits, labels)
    after = calibration_metrics(logits, labels, temperature=temperature)
    assert after["ece_dataset"] < before["ece_dataset"] / 3
    assert after["nll_dataset"] < before["nll_dataset"]
    table = temperature_scaling_table({"CE": (before, after, temperature)})
    assert table.splitlines()[0] == "| Method | Pre-TS | Post-TS (T) |"
    assert table.splitlines()[2] == f"| CE | {100 * before['ece_dataset']:.2f} | {100 * after['ece_dataset']:.2f} ({temperature:.1f}) |"


def test_labelled_pixel_sample_is_bounded_uniform_and_deterministic():
    logits = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).reshape(2, 3, 10, 10)
    labels = torch.randint(0, 3, (2, 10, 10), generator=torch.Generator().manual_seed(0))
    labels[0] = IGNORE_INDEX
    samples = []
    for _ in range(2):
        sample = LabelledPixelSample(max_pixels=30, seed=5)
        sample.update(logits[:1], labels[:1])
        sample.update(logits[1:], labels[1:])
        samples.append(sample)
    assert samples[0].logits.shape == (30, 3) and torch.equal(samples[0].logits, samples[1].logits)
    # all kept rows are labelled pixels of image 1, with their own label
    flat_logits = logits[1].reshape(3, -1).T
    for row, label in zip(samples[0].logits, samples[0].labels):
        index = int((flat_logits[:, 0] == row[0]).nonzero())
        assert torch.equal(flat_logits[index], row) and labels[1].flatten()[index] == label


def test_reliability_diagram_png_and_bins(tmp_path):
    logits, labels = hand_batch()
    accumulator = CalibrationAccumulator(2)
    accumulator.update(logits, labels)
    path = tmp_path / "reliability.png"
    bins = plot_reliability_diagram(accumulator.reliability_bins(), path, title="hand")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bins.counts.sum() == 4 and bins.counts[13] == 2
    assert bins.accuracy[13] == 0.5 and bins.confidence[13] == pytest.approx(0.91)
    assert math.isnan(bins.accuracy[0]) and bins.edges[-1] == 1.0


def test_all_reduce_is_noop_without_distributed():
    logits, labels = hand_batch()
    accumulator = CalibrationAccumulator(2)
    accumulator.update(logits, labels)
    before = accumulator.compute()
    accumulator.all_reduce()
    assert accumulator.compute() == before
