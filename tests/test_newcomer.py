"""The newcomer's path: a fast short --help, readable labels, progress within a batch, the step-size rule for any
budget, and training that never writes over the shipped model."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.conftest import ROOT, compose_config


@pytest.mark.parametrize("entry", ["evaluate", "train"])
def test_help_is_short_fast_and_names_the_groups(entry):
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", f"robust_seg.{entry}", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and time.perf_counter() - started < 10  # measured: 0.03 s
    text = completed.stdout
    assert "Config groups" in text and "Examples:" in text and "attack" in text and len(text.splitlines()) < 60
    assert "embedded" in text


def test_attack_labels_are_readable():
    from robust_seg.attacks.registry import resolve_attack

    def label(*overrides):
        return resolve_attack(compose_config("evaluate", list(overrides)).attack).label

    assert label("attack=sea", "attack.options.iterations=50") == "SEA (4 losses x 50 it.)"
    assert label("attack=apgd") == "APGD (Mask-CE, red-eps, 300 it.)"
    assert label("attack=segpgd") == "SegPGD (300 it.)" and label("attack=cospgd") == "CosPGD (300 it.)"
    assert label("attack=apgd_segpgd").startswith("SegAPGD (") and label("attack=pgd") == "PGD (CE, 300 it.)"
    assert label("attack=square") == "Square (5000 queries)"
    assert label("attack=alma_prox") == "ALMA prox (500 it.)"


def test_progress_within_a_batch_counts_every_pass():
    from robust_seg.attacks import apgd
    from robust_seg.attacks.progress import reporting
    from robust_seg.attacks.registry import resolve_attack
    from robust_seg.models.embedded import load_embedded_model

    model = load_embedded_model()
    images, labels = torch.rand(2, 3, 32, 32), torch.randint(0, 6, (2, 32, 32))
    ticks = []
    with reporting(ticks.append):
        apgd(model, images, labels, eps=4 / 255, iterations=9, generator=torch.Generator().manual_seed(0))
    expected = resolve_attack(compose_config("evaluate", ["attack=apgd", "attack.options.iterations=9"]).attack)
    assert sum(ticks) == expected.expected_passes() == 9 + 3  # one pass per iteration, plus each stage's start


def test_the_attacked_images_figure_has_a_class_legend(tmp_path):
    from robust_seg.evaluation.report import plot_attacked_images

    images, labels = torch.rand(1, 3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)
    figure = {"images": images, "labels": labels,
              "8/255": {"adv": images, "pred": labels, "acc": torch.ones(1)}}
    legend = plot_attacked_images(figure, ["background", "cat"], tmp_path / "figure.png")
    assert legend == ["background", "cat", "ignored (255)"] and (tmp_path / "figure.png").exists()


def test_embedded_training_never_writes_over_the_shipped_model():
    for name in ("embedded_train", "embedded_train_clean"):
        export = yaml.safe_load((ROOT / "configs" / "experiment" / f"{name}.yaml").read_text())["export_path"]
        assert not export.startswith("robust_seg/assets"), export
