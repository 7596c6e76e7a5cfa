"""The one model interface used by every attack, metric and training loop."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationModel(nn.Module):
    """Wraps an MMSeg ``EncoderDecoder``: RGB images in [0, 1] -> logits (B, K, H, W).

    Normalisation (ImageNet mean/std by default) happens inside, so attacks work
    in image space. Logits are bilinearly resized to the input resolution.
    ``sliding_window=(crop, stride)`` switches inference from whole-image to
    sliding-window (overlapping crops averaged), as MMSeg's ``slide`` mode.
    """

    def __init__(self, segmentor: nn.Module, num_classes: int,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 sliding_window: tuple[int, int] | None = None):
        super().__init__()
        self.segmentor = segmentor
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.sliding_window = tuple(sliding_window) if sliding_window else None
        self.weights: dict = {"source": "random", "checkpoint": None, "sha256": None, "backbone": None}
        """What the parameters were loaded from (set by ``robust_seg.models.build_model``; the run's provenance)."""

    @property
    def align_corners(self) -> bool:
        return bool(getattr(self.segmentor.decode_head, "align_corners", False))

    def _resize(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(logits.shape[-2:]) == tuple(size):
            return logits
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def _whole(self, images: torch.Tensor) -> torch.Tensor:
        features = self.segmentor.extract_feat((images - self.mean) / self.std)
        return self._resize(self.segmentor.decode_head(features), images.shape[-2:])

    def _slide(self, images: torch.Tensor) -> torch.Tensor:
        crop, stride = self.sliding_window
        batch, _, height, width = images.shape
        rows = max(height - crop + stride - 1, 0) // stride + 1
        cols = max(width - crop + stride - 1, 0) // stride + 1
        logits = images.new_zeros(batch, self.num_classes, height, width)
        counts = images.new_zeros(1, 1, height, width)
        for row in range(rows):
            for col in range(cols):
                top = min(row * stride, max(height - crop, 0))
                left = min(col * stride, max(width - crop, 0))
                window = images[:, :, top:top + crop, left:left + crop]
                logits[:, :, top:top + crop, left:left + crop] += self._whole(window)
                counts[:, :, top:top + crop, left:left + crop] += 1
        return logits / counts

    def forward(self, images: torch.Tensor, auxiliary: bool = False):
        """Logits (B, K, H, W) of ``images`` (B, 3, H, W) in [0, 1].

        ``auxiliary=True`` (training) returns ``(logits, auxiliary-head logits or None)``;
        it goes through ``forward`` so that DDP sees it.
        """
        if auxiliary:
            return self.forward_train(images)
        if self.sliding_window is None or max(images.shape[-2:]) <= self.sliding_window[0]:
            return self._whole(images)
        return self._slide(images)

    def forward_train(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(main logits, auxiliary-head logits or None), both at input resolution, for training."""
        features = self.segmentor.extract_feat((images - self.mean) / self.std)
        logits = self._resize(self.segmentor.decode_head(features), images.shape[-2:])
        auxiliary = None
        if getattr(self.segmentor, "with_auxiliary_head", False):
            head = self.segmentor.auxiliary_head
            heads = head if isinstance(head, nn.ModuleList) else [head]
            auxiliary = sum(self._resize(h(features), images.shape[-2:]) for h in heads)
        return logits, auxiliary

    def backbone(self) -> nn.Module:
        return self.segmentor.backbone
