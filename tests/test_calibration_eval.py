"""Calibration in evaluation runs: accumulator state round trip, metrics of the returned (adversarial) images,
temperature fitted on the held-out split, results.json/results.md/PNGs, and resume after an interruption."""
import json

import pytest
import torch
from torch import nn

from robust_seg import IGNORE_INDEX
from robust_seg.errors import ConfigError
from robust_seg.evaluation.calibration import (SCALED, UNSCALED, CalibrationTotals, EvaluationCalibration,
                                               fit_holdout_temperature, parse_temperature, reliability_bins_of)
from robust_seg.metrics.calibration import CalibrationAccumulator
from tests.conftest import calibration_metrics
from robust_seg.metrics.temperature import fit_temperature
from robust_seg.data.splits import split_train_validation
from tests.conftest import TINY, compose_config

NUM_CLASSES = 6


class PixelLinear(nn.Module):
    """Per-pixel linear segmentation model: logits = scale * conv1x1(images)."""

    def __init__(self, scale: float = 1.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, NUM_CLASSES, 1)
        self.scale = scale

    def forward(self, images):
        return self.scale * self.conv(images)


def fitted_pixel_linear(cfg, scale: float) -> PixelLinear:
    """`PixelLinear` fitted by a few Adam steps on synthetic training images (informative logits), then scaled."""
    from robust_seg.data import build_dataset

    train_split = build_dataset(cfg.dataset, split=cfg.dataset.train_split, train=False)
    images = torch.stack([train_split[i]["image"] for i in range(8)])
    labels = torch.stack([train_split[i]["label"] for i in range(8)])
    model = PixelLinear()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels, ignore_index=IGNORE_INDEX).backward()
        optimizer.step()
    model.scale = scale
    return model.eval()


def random_batch(seed: int, batch: int = 3, size: int = 8):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch, size, size), generator=generator)
    labels[:, 0, :] = IGNORE_INDEX
    return images, labels


def test_accumulator_state_round_trip_continues_exactly(tmp_path):
    model = PixelLinear(scale=4.0)
    batches = [random_batch(seed) for seed in range(4)]
    straight = CalibrationAccumulator(NUM_CLASSES, temperature=1.7)
    for images, labels in batches:
        straight.update(model(images), labels)
    first = CalibrationAccumulator(NUM_CLASSES, temperature=1.7)
    for images, labels in batches[:2]:
        first.update(model(images), labels)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = CalibrationAccumulator.from_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for images, labels in batches[2:]:
        resumed.update(model(images), labels)
    assert resumed.temperature == 1.7 and resumed.compute() == straight.compute()


def test_metrics_are_those_of_the_returned_images_at_each_radius_and_temperature():
    model = PixelLinear(scale=3.0)
    clean, labels = random_batch(1)
    adversarial = (clean + 0.03 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    calibration = EvaluationCalibration(NUM_CLASSES, temperature=2.5, temperature_source="given")
    calibration.update("0", model, clean, labels)
    calibration.update("8/255", model, adversarial, labels)
    summary = calibration.summary()
    assert summary["bins"] == 15 and summary["temperature"] == 2.5
    with torch.no_grad():
        for key, images in (("0", clean), ("8/255", adversarial)):
            entry = summary["radii"][key]
            expected = calibration_metrics(model(images), labels)
            assert {k: entry[UNSCALED][k] for k in expected} == expected
            scaled = calibration_metrics(model(images), labels, temperature=2.5)
            assert {k: entry[SCALED][k] for k in scaled} == scaled
    assert summary["radii"]["0"][UNSCALED]["ece_dataset"] != summary["radii"]["8/255"][UNSCALED]["ece_dataset"]
    bins = reliability_bins_of(summary["radii"]["0"][UNSCALED])
    assert bins.counts.sum() == (labels != IGNORE_INDEX).sum()
    restored = EvaluationCalibration.start(compose_config("evaluate", [*TINY, "calibration=true"]), model, "cpu",
                                           calibration.state_dict())
    assert restored.summary() == summary


def test_without_temperature_scaling_only_the_unscaled_metrics_exist():
    totals = CalibrationTotals(NUM_CLASSES, temperature=None)
    images, labels = random_batch(3)
    totals.update(PixelLinear()(images).detach(), labels)
    assert list(totals.summary()) == [UNSCALED]
    assert EvaluationCalibration.start(compose_config("evaluate", TINY), PixelLinear(), "cpu", None) is None


@pytest.mark.parametrize("value,expected", [(None, None), ("fit", "fit"), ("1.5", 1.5), (2, 2.0)])
def test_parse_temperature(value, expected):
    assert parse_temperature(value) == expected


@pytest.mark.parametrize("value", ["auto", 0, -1.0, "inf"])
def test_parse_temperature_rejects_other_values(value):
    with pytest.raises(ConfigError, match="calibration_temperature"):
        parse_temperature(value)


def test_temperature_is_fitted_on_the_held_out_part_of_the_training_split():
    from robust_seg.data import build_dataset

    cfg = compose_config("evaluate", TINY)
    model = fitted_pixel_linear(cfg, scale=5.0)
    fitted = fit_holdout_temperature(model, cfg.dataset, fraction=0.2, seed=3, batch_size=4, device="cpu")
    train_split = build_dataset(cfg.dataset, split=cfg.dataset.train_split, train=False)
    _, held_out = split_train_validation(len(train_split), 0.2, 3)
    samples = [train_split[i] for i in held_out]
    with torch.no_grad():
        logits = model(torch.stack([s["image"] for s in samples]))
    labels = torch.stack([s["label"] for s in samples])
    assert fitted == pytest.approx(fit_temperature(logits, labels), rel=1e-5) and 1 < fitted < 19
    # the other images give another temperature: the split matters
    others = [train_split[i] for i in range(len(held_out)) if i not in held_out]
    with torch.no_grad():
        other_logits = model(torch.stack([s["image"] for s in others]))
    assert fit_temperature(other_logits, torch.stack([s["label"] for s in others])) != pytest.approx(fitted, rel=1e-3)


EVALUATE = [*TINY, "dataset.synthetic.num_train=20", "attack=pgd", "attack.eps=[0,4/255]",
            "attack.options.iterations=2", "attack.options.step_size=0.01", "max_images=6", "batch_size=3",
            "calibration=true", "calibration_temperature=fit", "runtime.threads=1", "figure_images=1"]


def _checkpoint(tmp_path):
    """A fixed small model (random init, seed 0) saved as a checkpoint, so that the test can rebuild it."""
    from robust_seg.models import build_model

    torch.manual_seed(0)
    model = build_model(compose_config("evaluate", TINY).model, NUM_CLASSES)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    return model.eval()


def test_evaluation_run_reports_calibration_at_every_radius_and_resumes_identically(tmp_path, monkeypatch):
    from robust_seg.data import build_dataset
    from robust_seg.evaluation import driver

    model = _checkpoint(tmp_path)
    overrides = [*EVALUATE, f"model.checkpoint={tmp_path / 'model.pt'}"]
    straight = driver.evaluate(compose_config("evaluate", overrides), tmp_path / "straight")

    calibration = straight["calibration"]
    assert list(calibration["radii"]) == ["0", "4/255"] and "held out" in calibration["temperature_source"]
    cfg = compose_config("evaluate", overrides)
    expected_temperature = fit_holdout_temperature(model, cfg.dataset, fraction=0.2, seed=0, batch_size=3,
                                                   device="cpu")
    assert calibration["temperature"] == pytest.approx(expected_temperature)
    val = build_dataset(cfg.dataset, split="val", train=False)
    images = torch.stack([val[i]["image"] for i in range(6)])
    labels = torch.stack([val[i]["label"] for i in range(6)])
    accumulator = CalibrationAccumulator(NUM_CLASSES)
    with torch.no_grad():
        for start in (0, 3):
            accumulator.update(model(images[start:start + 3]), labels[start:start + 3])
    clean = calibration["radii"]["0"][UNSCALED]
    assert clean["ece_dataset"] == pytest.approx(accumulator.compute()["ece_dataset"], abs=1e-6)
    for key in ("0", "4/255"):
        for name in (UNSCALED, SCALED):
            metrics = calibration["radii"][key][name]
            assert 0 <= metrics["ece_dataset"] <= 1 and metrics["num_images"] == 6
    # under attack the network is wrong more often: its NLL grows
    assert calibration["radii"]["4/255"][UNSCALED]["nll_dataset"] > clean["nll_dataset"]

    run_dir = tmp_path / "straight"
    on_disk = json.loads((run_dir / "results.json").read_text())["calibration"]
    assert on_disk["radii"]["4/255"][SCALED]["ece_dataset"] == calibration["radii"]["4/255"][SCALED]["ece_dataset"]
    markdown = (run_dir / "results.md").read_text()
    assert "## Calibration" in markdown and "| Method | Pre-TS | Post-TS (T) |" in markdown
    for name in ("reliability_eps0.png", "reliability_eps0_ts.png", "reliability_eps4_255.png",
                 "reliability_eps4_255_ts.png"):
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"

    # interrupted after the first of two batches, then resumed: identical calibration results
    real_save, saves = driver.atomic_torch_save, []

    def save_then_die(path, obj):
        real_save(path, obj)
        saves.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        driver.evaluate(compose_config("evaluate", overrides), tmp_path / "resumed")
    monkeypatch.setattr(driver, "atomic_torch_save", real_save)
    assert len(saves) == 1
    resumed = driver.evaluate(compose_config("evaluate", [*overrides, "resume=true"]), tmp_path / "resumed")
    assert resumed["calibration"] == straight["calibration"]
    with pytest.raises(ConfigError, match="calibration_temperature: .fit. -> 2"):
        driver.evaluate(compose_config("evaluate", [*overrides, "resume=true", "calibration_temperature=2"]),
                        tmp_path / "resumed")
