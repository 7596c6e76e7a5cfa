"""The common corruptions through the imagecorruptions package (robust_seg/compat/corruptions.py): all 19 run on an
image of any size, each is a function of (image, corruption, severity, seed) alone, severity 0 is the image, the
damage grows with the severity, and the adaptation leaks nothing into NumPy or its global generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from robust_seg.compat.corruptions import COMMON, EXTRA, FAMILIES, SEVERITIES, corrupt


@pytest.fixture(scope="module")
def image():
    return torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", COMMON + EXTRA)
def test_every_corruption_is_deterministic_per_seed_and_keeps_the_image_form(image, name):
    first, again = corrupt(image, name, 3, seed=11), corrupt(image, name, 3, seed=11)
    assert torch.equal(first, again)
    assert first.shape == image.shape and first.dtype == image.dtype
    assert 0 <= float(first.min()) and float(first.max()) <= 1
    assert (first - image).abs().mean() > 1e-3  # it does corrupt


def test_severity_zero_is_the_image_and_damage_grows_with_severity(image):
    assert torch.equal(corrupt(image, "fog", 0, seed=1), image)
    for name in ("gaussian_noise", "defocus_blur", "contrast", "pixelate"):
        damage = [float((corrupt(image, name, s, seed=1) - image).abs().mean()) for s in SEVERITIES]
        assert damage == sorted(damage), (name, damage)


def test_seeds_matter_only_for_random_corruptions_and_the_global_state_is_restored(image):
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    noisy = [corrupt(image, "impulse_noise", 2, seed=s) for s in (1, 2)]
    assert np.random.rand() == expected  # the caller's NumPy stream is untouched
    assert not torch.equal(*noisy)
    assert torch.equal(corrupt(image, "brightness", 2, seed=1), corrupt(image, "brightness", 2, seed=2))
    assert not hasattr(np, "float_") or np.__version__.startswith("1.")  # no NumPy-wide alias


def test_names_and_errors():
    assert sum(len(v) for v in FAMILIES.values()) == 15 and set(sum(FAMILIES.values(), ())) == set(COMMON)
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        corrupt(torch.rand(3, 32, 32), "rain", 1, seed=0)
    with pytest.raises(ValueError, match="severity 6 must be 0-5"):
        corrupt(torch.rand(3, 32, 32), "fog", 6, seed=0)
