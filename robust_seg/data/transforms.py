"""Training augmentation of Table 5 (SEA paper, App. B.2) and the ``pad`` evaluation transform.

Images are float (3, H, W) in [0, 1], labels int64 (H, W) with 255 = ignore. All
randomness comes from an explicit ``torch.Generator`` so that a sample is a pure
function of (seed, epoch, index). Table 5 names base size, crop size, random horizontal
flip and random Gaussian blur; two pipelines implement them (``dataset.augmentation``):

``sea`` (:class:`SeaTrainTransform`): the SEA / PIR-AT code's ``_sync_transform``
(``nmndeep/Robust-Segmentation``, ``semseg/datasets/dataset_wrappers.py``), which trained
Tables 3-5, in its order and with its PIL operations:

1. horizontal flip with probability 1/2;
2. random scale of the SHORT side, drawn uniformly among the integers in
   ``[int(base_size * lo), int(base_size * hi)]`` (``scale_range``, 0.5..2.0), long side
   ``int(1.0 * long * short_size / short)``; image PIL bilinear, label PIL nearest;
3. if the drawn short side is below ``crop_size``: pad bottom/right to ``crop_size`` with
   image 0 and label ``label_pad`` (the official code pads labels with 0 = background);
4. Gaussian blur with probability 1/2, PIL ``GaussianBlur(radius=U(0, 1))``, BEFORE the crop;
5. random ``crop_size`` x ``crop_size`` crop.

``project`` (:class:`TrainTransform`): flip; the LONG side drawn in the same range; pad
(label ``label_pad``, 255 by default: padding stays out of the loss); crop; then blur with a
separable Gaussian of std U(0, 1) on the crop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robust_seg import IGNORE_INDEX

Sample = Tuple[torch.Tensor, torch.Tensor]


def resize(image: torch.Tensor, label: torch.Tensor, height: int, width: int) -> Sample:
    """Resize image (bilinear, antialiased when shrinking) and label (nearest) to (height, width)."""
    if image.shape[-2:] == (height, width):
        return image, label
    image = F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False,
                          antialias=True)[0].clamp_(0.0, 1.0)
    label = F.interpolate(label[None, None].float(), size=(height, width), mode="nearest-exact")[0, 0].long()
    return image, label


def pad_to(image: torch.Tensor, label: torch.Tensor, height: int, width: int,
           label_value: int = IGNORE_INDEX) -> Sample:
    """Pad bottom/right up to at least (height, width): image with 0, label with ``label_value`` (255)."""
    pad_h, pad_w = max(height - image.shape[-2], 0), max(width - image.shape[-1], 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
    label = F.pad(label, (0, pad_w, 0, pad_h), value=label_value)
    return image, label


def resize_long_side(image: torch.Tensor, label: torch.Tensor, long_side: int) -> Sample:
    """Resize keeping the aspect ratio so that the longer side equals ``long_side`` (rounded)."""
    height, width = image.shape[-2:]
    ratio = long_side / max(height, width)
    return resize(image, label, max(int(height * ratio + 0.5), 1), max(int(width * ratio + 0.5), 1))


def to_pil_image(image: torch.Tensor) -> Image.Image:
    """Float (3, H, W) in [0, 1] holding 8-bit values -> RGB PIL image (exact for images read from 8-bit files)."""
    array = image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(array, mode="RGB")


def from_pil_image(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def to_pil_label(label: torch.Tensor) -> Image.Image:
    return Image.fromarray(label.to(torch.uint8).numpy(), mode="L")


def from_pil_label(label: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(label, dtype=np.uint8).astype(np.int64))


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(height, width) with the short side ``short`` and the long side ``int(1.0 * long * short / short_side)``:
    the rule of both official codes (SEA ``_val_sync_transform``, torchvision ``Resize(int)``)."""
    if width > height:
        return short, int(1.0 * width * short / height)
    return int(1.0 * height * short / width), short


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with std ``sigma`` pixels, kernel radius ceil(3 sigma), reflect padding."""
    radius = max(int(math.ceil(3.0 * sigma)), 1)
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / max(sigma, 1e-3)) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[0]
    out = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out[0]


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator))


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


@dataclass(frozen=True)
class TrainTransform:
    """Random flip, long-side scale, pad, crop and blur of Table 5 (``project`` pipeline, module docstring)."""

    base_size: int
    crop_size: int
    scale_range: Sequence[float] = (0.5, 2.0)
    flip: bool = True
    gaussian_blur: bool = True
    label_pad: int = IGNORE_INDEX

    def __call__(self, image: torch.Tensor, label: torch.Tensor, generator: torch.Generator) -> Sample:
        if self.flip and _uniform(generator) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        low, high = self.scale_range
        long_side = _randint(int(self.base_size * low), int(self.base_size * high), generator)
        image, label = resize_long_side(image, label, max(long_side, 1))
        image, label = pad_to(image, label, self.crop_size, self.crop_size, self.label_pad)
        height, width = image.shape[-2:]
        top = _randint(0, height - self.crop_size, generator)
        left = _randint(0, width - self.crop_size, generator)
        image = image[:, top:top + self.crop_size, left:left + self.crop_size]
        label = label[top:top + self.crop_size, left:left + self.crop_size]
        if self.gaussian_blur and _uniform(generator) < 0.5:
            image = gaussian_blur(image, _uniform(generator))
        return image.contiguous(), label.contiguous()


@dataclass(frozen=True)
class SeaTrainTransform:
    """The SEA code's training augmentation (``sea`` pipeline, module docstring): flip, short-side scale, pad,
    blur, crop, in PIL as the official ``_sync_transform``."""

    base_size: int
    crop_size: int
    scale_range: Sequence[float] = (0.5, 2.0)
    flip: bool = True
    gaussian_blur: bool = True
    label_pad: int = 0

    def __call__(self, image: torch.Tensor, label: torch.Tensor, generator: torch.Generator) -> Sample:
        from PIL import ImageFilter, ImageOps

        if self.flip and _uniform(generator) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        low, high = self.scale_range
        short = max(_randint(int(self.base_size * low), int(self.base_size * high), generator), 1)
        height, width = short_side_size(*image.shape[-2:], short)
        size = (width, height)  # PIL sizes are (width, height)
        picture = to_pil_image(image).resize(size, Image.Resampling.BILINEAR)
        mask = to_pil_label(label).resize(size, Image.Resampling.NEAREST)
        crop = self.crop_size
        if short < crop:
            border = (0, 0, max(crop - size[0], 0), max(crop - size[1], 0))
            picture = ImageOps.expand(picture, border=border, fill=0)
            mask = ImageOps.expand(mask, border=border, fill=self.label_pad)
        if self.gaussian_blur and _uniform(generator) < 0.5:
            picture = picture.filter(ImageFilter.GaussianBlur(radius=_uniform(generator)))
        width, height = picture.size
        left = _randint(0, width - crop, generator)
        top = _randint(0, height - crop, generator)
        box = (left, top, left + crop, top + crop)
        return from_pil_image(picture.crop(box)).contiguous(), from_pil_label(mask.crop(box)).contiguous()


@dataclass(frozen=True)
class EvalTransform:
    """The ``pad`` evaluation protocol (``robust_seg.data.protocols``).

    ``size=None``: identity (images keep their own size; batch 1 if sizes differ).
    ``size=S``: images whose long side exceeds S are downscaled to long side S
    (label nearest), then everything is padded bottom/right to S x S with image 0
    and label 255, so padded pixels never count. Choice: with S >= the largest
    image (VOC: <= 500 px, S = 512) evaluation happens at the original resolution
    on the original labels; for ADE20K (long sides up to ~2000 px) it downscales.
    """

    size: Optional[int] = None

    def __call__(self, image: torch.Tensor, label: torch.Tensor, generator: torch.Generator) -> Sample:
        if self.size is None:
            return image, label
        if max(image.shape[-2:]) > self.size:
            image, label = resize_long_side(image, label, self.size)
        return pad_to(image, label, self.size, self.size)
