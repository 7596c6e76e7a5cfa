"""The common corruptions (Hendrycks & Dietterich 2019; for segmentation Kamann & Rother 2020) from the field's
package, ``imagecorruptions`` (Michaelis et al. 2019: the 15 ImageNet-C corruptions and 4 extra ones, for images of
any size), made to run with current libraries and deterministic per image.

The release on PyPI (1.1.2, 2020) predates NumPy 2, scikit-image 0.19 and setuptools without ``pkg_resources``; its
repository has the fixes but no newer release. This module adapts the released package at import, without
changing any corruption's arithmetic:

- ``pkg_resources.resource_filename`` (the frost images' location), where setuptools no longer provides it;
- scikit-image's ``gaussian(..., multichannel=True)`` as ``channel_axis=-1`` (the same filter);
- ``np.float_`` (fog's plasma fractal) as ``np.float64``, inside the package's module only;
- impulse noise draws from NumPy's global generator, as every other corruption does (scikit-image's
  ``random_noise`` now draws from fresh OS entropy unless given a seed).

``corrupt(image, name, severity, seed)`` seeds NumPy's global generator with ``seed`` for the call and restores
it afterwards: the corruption of an image is a function of (image, corruption, severity, seed) alone.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from functools import lru_cache

import numpy as np
import torch

COMMON = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
          "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
"""The 15 corruptions of ImageNet-C, in the package's (and the paper's) order."""
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
"""The 4 extra (validation) corruptions."""
FAMILIES = {"noise": COMMON[0:3], "blur": COMMON[3:7], "weather": COMMON[7:11], "digital": COMMON[11:15]}
"""Hendrycks & Dietterich's four families of the 15."""
SEVERITIES = (1, 2, 3, 4, 5)


class CorruptionsUnavailable(ImportError):
    """The ``imagecorruptions`` package (or scikit-image) is not installed."""


def _resource_filename(package: str, resource: str) -> str:
    spec = importlib.util.find_spec(package)
    return os.path.normpath(os.path.join(os.path.dirname(spec.origin), resource))


class _NumPyWithFloat(types.ModuleType):
    """NumPy as the package's module sees it: ``np.float_`` is ``np.float64`` (removed in NumPy 2)."""

    float_ = np.float64

    def __getattr__(self, name: str):
        return getattr(np, name)


@lru_cache(maxsize=1)
def package():
    """The adapted ``imagecorruptions`` package (imported once)."""
    if importlib.util.find_spec("pkg_resources") is None and "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = _resource_filename
        sys.modules["pkg_resources"] = shim
    try:
        import skimage
        from skimage.filters import gaussian as skimage_gaussian
        from skimage.util import random_noise

        import imagecorruptions
        from imagecorruptions import corruptions
    except ImportError as error:
        raise CorruptionsUnavailable(f"the common corruptions need the imagecorruptions package ({error}): run "
                                     "bash scripts/setup.sh, which installs it") from None

    def gaussian(image, *args, multichannel=None, **kwargs):
        if multichannel is not None:
            kwargs.setdefault("channel_axis", -1 if multichannel else None)
        return skimage_gaussian(image, *args, **kwargs)

    def seeded_random_noise(image, *args, **kwargs):
        kwargs.setdefault("rng", int(np.random.randint(0, 2**31 - 1)))
        return random_noise(image, *args, **kwargs)

    corruptions.gaussian = gaussian
    corruptions.np = _NumPyWithFloat("numpy")
    corruptions.sk = types.SimpleNamespace(util=types.SimpleNamespace(random_noise=seeded_random_noise),
                                           color=skimage.color)
    return imagecorruptions


def corrupt(image: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """``image`` (3, H, W) in [0, 1], H and W >= 32, under corruption ``name`` at ``severity`` (1-5; 0: the image
    itself), quantised to 8 bits as the package works; the same for the same (image, name, severity, seed)."""
    if severity == 0:
        return image.clone()
    if name not in COMMON + EXTRA:
        raise ValueError(f"unknown corruption {name!r} (choose from {', '.join(COMMON + EXTRA)})")
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity} must be 0-5")
    array = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        corrupted = np.asarray(package().corrupt(array, severity=severity, corruption_name=name))
    finally:
        np.random.set_state(state)
    height, width = array.shape[:2]
    corrupted = corrupted[:height, :width]  # the package keeps the size; a guard for its crops
    return torch.from_numpy(np.array(corrupted, dtype=np.uint8, copy=True)).permute(2, 0, 1).to(image.dtype).div(255)
