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
    ``pad_to_multiple=m`` (the Segmenter's patch size) pads the normalised input bottom/right with 0 to a
    multiple of m, resizes the logits to the padded size and then crops them to the input, in the order of the
    official Segmenter (``padding`` / ``unpadding`` of ``nmndeep/Robust-Segmentation``, after Strudel et al.).
    """

    def __init__(self, segmentor: nn.Module, num_classes: int,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 sliding_window: tuple[int, int] | None = None, pad_to_multiple: int | None = None):
        super().__init__()
        self.segmentor = segmentor
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.sliding_window = tuple(sliding_window) if sliding_window else None
        self.pad_to_multiple = pad_to_multiple or None
        self.weights: dict = {"source": "random", "checkpoint": None, "sha256": None, "backbone": None}
        """What the parameters were loaded from (set by ``robust_seg.models.build_model``; the run's provenance)."""

    @property
    def align_corners(self) -> bool:
        return bool(getattr(self.segmentor.decode_head, "align_corners", False))

    def _resize(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(logits.shape[-2:]) == tuple(size):
            return logits
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def _features(self, images: torch.Tensor):
        """Backbone features of the normalised images (padded to ``pad_to_multiple``) and the padded size."""
        inputs = (images - self.mean) / self.std
        if self.pad_to_multiple:
            height, width = images.shape[-2:]
            pad_h, pad_w = -height % self.pad_to_multiple, -width % self.pad_to_multiple
            if pad_h or pad_w:
                inputs = F.pad(inputs, (0, pad_w, 0, pad_h), value=0.0)
        return self.segmentor.extract_feat(inputs), tuple(inputs.shape[-2:])

    def _head_logits(self, head: nn.Module, features, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """A head's logits resized to the padded size, then cropped to ``size`` (no crop without padding)."""
        logits = self._resize(head(features), padded)
        return logits if padded == tuple(size) else logits[..., :size[0], :size[1]]

    def _whole(self, images: torch.Tensor) -> torch.Tensor:
        features, padded = self._features(images)
        return self._head_logits(self.segmentor.decode_head, features, padded, images.shape[-2:])

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
        features, padded = self._features(images)
        size = images.shape[-2:]
        logits = self._head_logits(self.segmentor.decode_head, features, padded, size)
        auxiliary = None
        if getattr(self.segmentor, "with_auxiliary_head", False):
            head = self.segmentor.auxiliary_head
            heads = head if isinstance(head, nn.ModuleList) else [head]
            auxiliary = sum(self._head_logits(h, features, padded, size) for h in heads)
        return logits, auxiliary

    def backbone(self) -> nn.Module:
        return self.segmentor.backbone
