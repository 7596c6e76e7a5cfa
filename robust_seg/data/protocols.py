"""Evaluation protocols: how a validation image and its label are prepared before the model sees them.

A published number is only comparable under the transform and label convention its paper's code used, so the
protocol is part of a dataset's configuration (``dataset.protocol``, ``dataset.outlines``) and of every record.

``pad`` (this project's own; the default of plain runs)
    Images whose long side exceeds ``dataset.eval_size`` are downscaled to that long side, then everything is
    padded bottom/right to ``eval_size`` x ``eval_size`` (image 0, label 255: padding never counts).
    ``eval_size: null`` keeps the images as stored.
``sea`` (the SEA / PIR-AT code, ``nmndeep/Robust-Segmentation``, ``SegmentationDataset._val_sync_transform``)
    The SHORT side is resized to ``dataset.crop_size`` (VOC 473, ADE20K 512; long side
    ``int(1.0 * long * crop / short)``; PIL bilinear image, PIL nearest label), then the centre
    ``crop_size`` x ``crop_size`` square is cut (offset ``int(round((side - crop) / 2.0))``). PASCAL-VOC's
    object outlines (label 255) count as background (``pascal_voc.py``, ``_mask_transform``).
``thesis`` (the ALMA prox code, ``jeromerony/alma_prox_segmentation``, ``dataset_ingredient.py``)
    torchvision ``Resize(eval_size)``: the SHORT side becomes ``dataset.eval_size`` (long side
    ``int(size * long / short)``; PIL bilinear image, label by ``torch`` nearest on the tensor), whole image,
    batch 1; ``eval_size: null`` keeps the stored size (Cityscapes at 2048x1024). Label 255 is ignored.

Label conventions (``dataset.outlines``): ``ignore`` (label 255 never counts) or ``background`` (255 becomes
class 0, so outlines count as background and nothing is ignored); ``null`` takes the protocol's convention.

The resize of ``sea`` and ``thesis`` runs in PIL on the 8-bit image, exactly as the official code: the image is
read from 8-bit files, so the round trip through uint8 is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from PIL import Image

from robust_seg import IGNORE_INDEX
from robust_seg.data.transforms import (EvalTransform, from_pil_image, from_pil_label, short_side_size,
                                       to_pil_image, to_pil_label)

Sample = Tuple[torch.Tensor, torch.Tensor]

PROTOCOLS = ("pad", "sea", "thesis")
OUTLINES = ("ignore", "background")
DEFAULT_PROTOCOL = "pad"
VARIABLE_SIZE_DATASETS = ("pascal_voc", "ade20k")
"""Datasets whose images come in many sizes (Cityscapes' are all 2048x1024, the synthetic ones square)."""


def centre_crop_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    """(top, left) of the SEA code's centre crop: ``int(round((side - crop) / 2.0))`` (Python rounds halves to even)."""
    return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def sea_eval_transform(image: torch.Tensor, label: torch.Tensor, crop: int) -> Sample:
    """Short side to ``crop`` (PIL bilinear / nearest), then the centre ``crop`` x ``crop`` square (an image of
    exactly that size is returned as it is)."""
    if tuple(image.shape[-2:]) == (crop, crop):
        return image, label
    height, width = short_side_size(*image.shape[-2:], crop)
    picture = to_pil_image(image).resize((width, height), Image.Resampling.BILINEAR)
    mask = to_pil_label(label).resize((width, height), Image.Resampling.NEAREST)
    top, left = centre_crop_offsets(height, width, crop)
    box = (left, top, left + crop, top + crop)
    return from_pil_image(picture.crop(box)), from_pil_label(mask.crop(box))


def thesis_eval_transform(image: torch.Tensor, label: torch.Tensor, short: Optional[int]) -> Sample:
    """torchvision ``Resize(short)`` of the image (PIL bilinear) and of the label tensor (``torch`` nearest)."""
    if short is None or min(image.shape[-2:]) == short:
        return image, label
    height, width = short_side_size(*image.shape[-2:], short)
    picture = to_pil_image(image).resize((width, height), Image.Resampling.BILINEAR)
    resized = F.interpolate(label[None, None].float(), size=(height, width), mode="nearest")[0, 0].long()
    return from_pil_image(picture), resized


@dataclass(frozen=True)
class EvalProtocol:
    """The evaluation transform and label convention of ``protocol`` (see the module docstring).

    ``size``: ``eval_size`` for ``pad`` and ``thesis``, ``crop_size`` for ``sea``.
    """

    protocol: str = DEFAULT_PROTOCOL
    size: Optional[int] = None
    outlines: str = "ignore"

    def __call__(self, image: torch.Tensor, label: torch.Tensor, generator: torch.Generator) -> Sample:
        if self.protocol == "sea":
            image, label = sea_eval_transform(image, label, self.size)
        elif self.protocol == "thesis":
            image, label = thesis_eval_transform(image, label, self.size)
        else:
            image, label = EvalTransform(self.size)(image, label, generator)
        if self.outlines == "background":
            label = torch.where(label == IGNORE_INDEX, torch.zeros_like(label), label)
        return image, label

    @property
    def fixed_size(self) -> bool:
        """Whether every image comes out at one size (then images batch whatever their stored sizes)."""
        return self.protocol == "sea" or (self.protocol == "pad" and self.size is not None)

    def describe(self) -> str:
        """One line for reports, e.g. ``sea: short side to 473, centre crop 473x473; outlines (255) as background``."""
        if self.protocol == "sea":
            what = f"short side to {self.size} (PIL bilinear), centre crop {self.size}x{self.size} (SEA code)"
        elif self.protocol == "thesis":
            what = (f"short side to {self.size} (PIL bilinear), whole image (ALMA prox code)" if self.size
                    else "images as stored, whole image (ALMA prox code)")
        else:
            what = (f"long side at most {self.size}, padded to {self.size}x{self.size} with ignored labels"
                    if self.size else "images as stored")
        labels = "label 255 counts as background" if self.outlines == "background" else "label 255 ignored"
        return f"{self.protocol}: {what}; {labels}"


def resolve_protocol(dataset, zoo=None) -> tuple[str, str]:
    """(protocol, outlines) of a dataset config: its own values where set, else the zoo entry's protocol, else
    ``pad``; outlines: ``background`` for ``sea`` on PASCAL-VOC (the SEA code's VOC loader), else ``ignore``."""
    protocol = getattr(dataset, "protocol", None) or (getattr(zoo, "protocol", None) if zoo is not None else None) \
        or DEFAULT_PROTOCOL
    outlines = getattr(dataset, "outlines", None) or (
        "background" if protocol == "sea" and dataset.name == "pascal_voc" else "ignore")
    return protocol, outlines


def eval_protocol(dataset) -> EvalProtocol:
    """The ``EvalProtocol`` of a (validated) ``DatasetConfig``."""
    protocol, outlines = resolve_protocol(dataset)
    size = dataset.crop_size if protocol == "sea" else dataset.eval_size
    return EvalProtocol(protocol, size, outlines)


def keeps_image_sizes(dataset) -> bool:
    """Whether evaluation images of this dataset come out in several sizes (they are then evaluated one at a time)."""
    return not eval_protocol(dataset).fixed_size and dataset.name in VARIABLE_SIZE_DATASETS
