"""Procedural segmentation dataset: textured shapes on a textured background.

Deterministic by seed, no files. Each sample is a pure function of
(seed, split, index), generated on access in about a millisecond (numpy, 64x64).

Design (so that accuracy and robustness mean something):

* Class 0 is the background: a random colour (uniform in [0.25, 0.75]^3 per
  image) with a smooth low-frequency texture and, in half of the images, a
  faint distractor copy of a random object class's texture (20-50% of the
  object contrast; objects use 40-100%), so texture strength overlaps too.
* Object class k >= 1 = a texture (stripes at 0/90/45/135 degrees, checker,
  dots, with a class period) x one of three base colours. Colours repeat across
  classes (k mod 3) and overlap the background colour range, and textures are
  zero-mean modulations, so single-pixel colour is not enough: a model must use
  texture, i.e. spatial context.
* Per object: random shape (ellipse, rectangle, triangle, blob) independent of
  the class, random position/size, colour jitter, texture phase/angle/period
  jitter; objects overlap (later ones occlude earlier ones).
* Per image: random illumination (gain, offset, linear gradient), Gaussian
  pixel noise.
* Labels: every boundary between two regions gets an ignore band (255) of
  thickness ``border_width`` pixels, like VOC's object outlines.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Tuple

import numpy as np
import torch

from robust_seg import IGNORE_INDEX
from robust_seg.data.base import SegmentationDataset, Transform
from robust_seg.data.config import SyntheticConfig
from robust_seg.data.errors import DatasetError

SPLITS = {"train": 0, "val": 1}
_DOMAIN = 0x5EED  # separates the generator's seed stream from the augmentation's
_BASE_COLOURS = (("red", (0.78, 0.32, 0.30)), ("green", (0.32, 0.68, 0.36)), ("blue", (0.30, 0.40, 0.80)))
_TEXTURES = (("stripes", 0.0, 4.0), ("stripes", 90.0, 4.0), ("checker", 0.0, 6.0), ("dots", 0.0, 5.0),
             ("stripes", 45.0, 6.0), ("stripes", 135.0, 6.0), ("checker", 45.0, 4.0), ("dots", 0.0, 8.0))
_SHAPES = ("ellipse", "rectangle", "triangle", "blob")


def class_appearance(class_index: int) -> Tuple[str, float, float, Tuple[float, float, float]]:
    """(texture kind, angle in degrees, period in pixels, base colour) of object class ``class_index`` >= 1.

    Classes beyond the 8 base textures reuse them with a 1.5x, 2.25x, ... period.
    """
    kind, angle, period = _TEXTURES[(class_index - 1) % len(_TEXTURES)]
    period *= 1.5 ** ((class_index - 1) // len(_TEXTURES))
    return kind, angle, period, _BASE_COLOURS[class_index % len(_BASE_COLOURS)][1]


def synthetic_class_names(num_classes: int) -> List[str]:
    names = ["background"]
    for k in range(1, num_classes):
        kind, angle, period, _ = class_appearance(k)
        colour = _BASE_COLOURS[k % len(_BASE_COLOURS)][0]
        names.append(f"{colour}-{kind}{int(angle)}-p{period:g}")
    return names


@lru_cache(maxsize=8)
def _grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return yy, xx


def _texture(kind: str, angle: float, period: float, rng: np.random.Generator, yy: np.ndarray,
             xx: np.ndarray) -> np.ndarray:
    """Zero-centred pattern in [-1, 1] on the grid, with random phase and small angle/period jitter."""
    theta = math.radians(angle + rng.uniform(-8.0, 8.0))
    period = period * rng.uniform(0.85, 1.15)
    u = (xx * math.cos(theta) + yy * math.sin(theta)) * (2 * math.pi / period) + rng.uniform(0, 2 * math.pi)
    v = (yy * math.cos(theta) - xx * math.sin(theta)) * (2 * math.pi / period) + rng.uniform(0, 2 * math.pi)
    if kind == "stripes":
        return np.sin(u)
    if kind == "checker":
        return np.tanh(4.0 * np.sin(u) * np.sin(v))
    return np.where(np.cos(u) + np.cos(v) > 1.0, 1.0, -0.35).astype(np.float32)  # dots


def _shape_mask(shape: str, size: int, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    cy, cx = rng.uniform(0.1, 0.9, size=2) * size
    radius = rng.uniform(0.15, 0.33) * size
    theta = rng.uniform(0, math.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = dy * math.cos(theta) - dx * math.sin(theta)
    if shape == "ellipse":
        minor = radius * rng.uniform(0.5, 1.0)
        return (u / radius) ** 2 + (v / minor) ** 2 <= 1.0
    if shape == "rectangle":
        return (np.abs(u) <= radius * 0.85) & (np.abs(v) <= radius * rng.uniform(0.4, 0.85))
    if shape == "triangle":
        angles = theta + 2 * math.pi * np.arange(3) / 3 + rng.uniform(-0.4, 0.4, size=3)
        vy, vx = cy + 1.2 * radius * np.sin(angles), cx + 1.2 * radius * np.cos(angles)
        edges = [(vx[(i + 1) % 3] - vx[i]) * (yy - vy[i]) - (vy[(i + 1) % 3] - vy[i]) * (xx - vx[i]) for i in range(3)]
        return (edges[0] >= 0) & (edges[1] >= 0) & (edges[2] >= 0)
    phi = np.arctan2(dy, dx)
    amplitudes, phases = rng.uniform(0.0, 0.25, size=2), rng.uniform(0, 2 * math.pi, size=2)
    boundary = radius * (1 + amplitudes[0] * np.cos(2 * phi + phases[0]) + amplitudes[1] * np.cos(3 * phi + phases[1]))
    return np.hypot(dy, dx) <= boundary  # blob


def _ignore_borders(label: np.ndarray, width: int) -> np.ndarray:
    """Set to 255 a band ``width`` pixels thick along every boundary between differently labelled regions.

    A pixel is in the band when the window of offsets ``-(width // 2) .. width - width // 2``
    (in y and x) around it sees another label; a straight edge then gets exactly
    ``width`` ignored pixels across it.
    """
    if width == 0:
        return label
    before, after = width // 2, width - width // 2
    size_h, size_w = label.shape
    padded = np.pad(label, (before, after), mode="edge")
    boundary = np.zeros(label.shape, dtype=bool)
    for dy in range(-before, after + 1):
        for dx in range(-before, after + 1):
            if dy or dx:
                shifted = padded[before + dy:before + dy + size_h, before + dx:before + dx + size_w]
                boundary |= shifted != label
    return np.where(boundary, IGNORE_INDEX, label)


def generate_sample(num_classes: int, cfg: SyntheticConfig, seed: int, split: str,
                    index: int) -> Tuple[np.ndarray, np.ndarray]:
    """One sample: image float32 (3, S, S) in [0, 1] and label int64 (S, S); a pure function of its arguments."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _DOMAIN, SPLITS[split], index]))
    size = cfg.image_size
    yy, xx = _grid(size)
    # background: random colour, smooth low-frequency texture
    image = np.empty((3, size, size), dtype=np.float32)
    image[:] = rng.uniform(0.25, 0.75, size=(3, 1, 1))
    for _ in range(2):
        frequency = rng.uniform(0.5, 2.0) * 2 * math.pi / size
        theta = rng.uniform(0, 2 * math.pi)
        wave = np.sin(frequency * (xx * math.cos(theta) + yy * math.sin(theta)) + rng.uniform(0, 2 * math.pi))
        image += rng.uniform(0.05, 0.12, size=(3, 1, 1)) * wave
    if rng.uniform() < 0.5:  # distractor: a faint texture of a random object class on the background
        kind, angle, period, _ = class_appearance(int(rng.integers(1, num_classes)))
        image += cfg.texture_contrast * rng.uniform(0.2, 0.5) * _texture(kind, angle, period, rng, yy, xx)
    label = np.zeros((size, size), dtype=np.int64)
    for _ in range(rng.integers(cfg.min_objects, cfg.max_objects + 1)):
        k = int(rng.integers(1, num_classes))
        mask = _shape_mask(_SHAPES[rng.integers(len(_SHAPES))], size, rng, yy, xx)
        kind, angle, period, colour = class_appearance(k)
        colour = np.asarray(colour, dtype=np.float32)[:, None, None] + rng.normal(0, cfg.colour_jitter, (3, 1, 1))
        amplitude = cfg.texture_contrast * rng.uniform(0.4, 1.0)
        appearance = colour + amplitude * _texture(kind, angle, period, rng, yy, xx)
        image = np.where(mask, appearance, image)
        label[mask] = k
    # illumination: gain, offset, linear gradient; then sensor noise
    theta = rng.uniform(0, 2 * math.pi)
    gradient = rng.uniform(-0.15, 0.15) * ((xx * math.cos(theta) + yy * math.sin(theta)) / size - 0.5)
    image = image * (rng.uniform(0.75, 1.25) + gradient) + rng.uniform(-0.08, 0.08)
    image = image + rng.normal(0, cfg.noise_std, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32), _ignore_borders(label, cfg.border_width)


class SyntheticSegmentation(SegmentationDataset):
    """Split ``train`` or ``val`` of the procedural dataset (see module docstring)."""

    def __init__(self, *, num_classes: int, cfg: SyntheticConfig, split: str, seed: int, transform: Transform,
                 max_images: int | None = None) -> None:
        if split not in SPLITS:
            raise DatasetError(f"synthetic dataset has splits {sorted(SPLITS)}, not {split!r}")
        count = cfg.num_train if split == "train" else cfg.num_val
        if max_images is not None:
            count = min(count, max_images)
        super().__init__(names=[f"synthetic_{split}_{i:06d}" for i in range(count)],
                         class_names=synthetic_class_names(num_classes), transform=transform, seed=seed)
        self.cfg, self.split = cfg, split

    def load(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image, label = generate_sample(self.num_classes, self.cfg, self.seed, self.split, index)
        return torch.from_numpy(image), torch.from_numpy(label)
