"""CALS-ALM vs CE on the synthetic dataset with the small model and an equal budget (thesis Table 6.2 layout).

The default suite checks the mechanics on a tiny budget (equal training-set sizes, multipliers learnt per
epoch on the held-out images, calibration in the evaluation, the table); the slow test runs the comparison of
docs/calibration.md for CE and CALS-ALM and asserts that CALS-ALM's ECE is lower.
"""
import json

import pytest
import torch

from robust_seg.data.splits import split_train_validation
from tests.conftest import compose_config, script

compare = script("compare_calibration")


@pytest.mark.parametrize("train_images", [8, 16, 40, 64, 100])
def test_the_training_split_leaves_the_requested_number_of_training_images(train_images):
    trained, held_out = split_train_validation(compare.training_split_size(train_images), compare.VALIDATION_FRACTION, 0)
    assert len(trained) == train_images and len(held_out) > 0


def test_every_loss_trains_on_the_same_images_when_held_out():
    from robust_seg.training import loop
    from robust_seg.training.losses import build_train_loss

    assert not loop._uses_validation_split(build_train_loss("ce", 6))  # by default only CALS holds images out
    assert loop._uses_validation_split(build_train_loss("cals_alm", 6))
    cfg = compose_config("train", ["experiment=cals_synthetic", "scheme=ce", compare.HOLD_OUT])
    assert cfg.scheme.hold_out_validation is True


def test_scheme_ce_is_clean_training_with_cross_entropy():
    ce, clean = compose_config("train", ["scheme=ce"]).scheme, compose_config("train", ["scheme=clean"]).scheme
    assert ce.loss == clean.loss == {"name": "ce"} and ce.adversarial is None is clean.adversarial


def _train_and_evaluate(method: str, tmp_path, epochs: int, train_images: int, val_images: int):
    """As the script: every loss trains on the same images (the validation split held out for all)."""
    from robust_seg.evaluation import evaluate
    from robust_seg.training import train

    model_path = tmp_path / f"{method}.pt"
    size = compare.training_split_size(train_images)
    history = train(compose_config("train", [
        "logger=none", "experiment=cals_synthetic", f"scheme={method}", compare.HOLD_OUT,
        f"dataset.synthetic.num_train={size}", f"dataset.synthetic.num_val={val_images}",
        f"schedule.epochs={epochs}", f"export_path={model_path}",
    ]), tmp_path / f"train_{method}")["history"]
    results = evaluate(compose_config("evaluate", [
        "logger=none", "experiment=cals_synthetic_eval", f"model.checkpoint={model_path}",
        "calibration_temperature=fit", f"dataset.synthetic.num_train={size}",
        f"dataset.synthetic.num_val={val_images}"]), tmp_path / f"evaluate_{method}")
    return {"method": method, "results": results, "history": history}


def test_comparison_mechanics_on_a_tiny_budget(tmp_path):
    rows = [_train_and_evaluate(method, tmp_path, epochs=2, train_images=16, val_images=8)
            for method in ("ce", "cals_alm")]
    ce, alm = rows
    assert [len(h.get("multipliers", [])) for h in ce["history"]] == [0, 0]
    multipliers = torch.tensor([h["multipliers"] for h in alm["history"]])
    assert multipliers.shape == (2, 6) and (multipliers >= 1e-6).all() and (multipliers <= 1e6).all()
    assert (tmp_path / "train_cals_alm" / "multipliers.png").exists()
    table = compare.table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| Loss | ACC | mIoU | ECE | AECE | CWCE | NLL |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["CE", "CALS-ALM"]
    for row, line in zip(rows, lines[2:]):
        metrics = row["results"]["calibration"]["radii"]["0"]["T=1"]
        assert f"{100 * metrics['ece_dataset']:.2f}" == line.split("|")[4].strip()
        assert 0 <= metrics["ece_dataset"] <= 1 and metrics["num_images"] == 8
    temperatures = compare.temperature_table(rows).splitlines()
    assert temperatures[0] == "| Method | Pre-TS | Post-TS (T) |" and len(temperatures) == 4
    assert all(row["results"]["calibration"]["temperature"] > 0 for row in rows)


@pytest.mark.slow
def test_cals_alm_is_better_calibrated_than_ce_with_an_equal_budget(tmp_path):
    """The setting of docs/calibration.md (scripts/compare_calibration.py defaults), CE and CALS-ALM only."""
    torch.set_num_threads(1)  # as the script's runs
    rows = [_train_and_evaluate(method, tmp_path, epochs=60, train_images=64, val_images=128)
            for method in ("ce", "cals_alm")]
    print(compare.table(rows))
    ce, alm = (row["results"]["calibration"]["radii"]["0"]["T=1"] for row in rows)
    assert alm["ece_dataset"] < ce["ece_dataset"]
    (tmp_path / "rows.json").write_text(json.dumps([r["results"]["calibration"] for r in rows], default=str))
