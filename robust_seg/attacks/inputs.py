"""The inputs of the public attack functions (``rs.attacks.*``), checked before any work: one line naming the
input and the fix instead of an error deep inside an attack (or a threat-model violation blamed on it)."""
from __future__ import annotations

import functools
from typing import Callable

import torch

from robust_seg import IGNORE_INDEX
from robust_seg.errors import RobustSegError
from robust_seg.radii import parse_radius


class AttackInputError(RobustSegError, ValueError):
    """Images, labels or a model's output do not have the form the attacks take."""


def check_attack_inputs(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Images float (B, 3, H, W) in [0, 1]; labels integer (B, H, W) in 0..K-1 or 255; the model's logits
    (B, K, H, W), finite, on the images' device (one forward, without gradients)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise AttackInputError(f"images must be a float tensor (B, 3, H, W), got "
                               f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
                               f"{'' if not isinstance(images, torch.Tensor) else ' ' + str(images.dtype)}")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        hint = " (divide 8-bit images by 255)" if high > 1.5 else ""
        raise AttackInputError(f"images must lie in [0, 1], got values in [{low:g}, {high:g}]{hint}")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dim() != 3 \
            or labels.shape[0] != images.shape[0] or tuple(labels.shape[-2:]) != tuple(images.shape[-2:]):
        raise AttackInputError(f"labels must be an integer tensor (B, H, W) = ({images.shape[0]}, "
                               f"{images.shape[-2]}, {images.shape[-1]}) matching the images, got "
                               f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}"
                               f"{' ' + str(labels.dtype) if isinstance(labels, torch.Tensor) else ''}")
    with torch.no_grad():
        logits = model(images)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        raise AttackInputError(f"the model must return logits (B, K, H, W), got "
                               f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if logits.device != images.device:
        raise AttackInputError(f"the model returns logits on {logits.device} for images on {images.device}: "
                               "move the model and the images to one device")
    if logits.shape[0] != images.shape[0] or tuple(logits.shape[-2:]) != tuple(images.shape[-2:]):
        raise AttackInputError(f"the model returns logits {tuple(logits.shape)} for images {tuple(images.shape)}: "
                               "it must keep the batch size and the image size")
    valid = labels != IGNORE_INDEX
    if bool(((labels < 0) | (labels >= logits.shape[1]))[valid].any()):
        bad = sorted(set(labels[valid & ((labels < 0) | (labels >= logits.shape[1]))].tolist()))[:5]
        raise AttackInputError(f"labels hold {bad}, outside the model's {logits.shape[1]} classes 0.."
                               f"{logits.shape[1] - 1} and the ignore index {IGNORE_INDEX}")
    if not bool(torch.isfinite(logits).all()):
        raise AttackInputError("the model returns NaN or infinite logits on the clean images (check its weights)")


def checked(attack: Callable) -> Callable:
    """``attack(model, images, labels, ...)`` with :func:`check_attack_inputs` first (the public API's form); ``eps``
    as a float in [0, 1] or the papers' string (``"8/255"``), parsed as the command line parses it."""
    @functools.wraps(attack)
    def run(model, images, labels, *args, **kwargs):
        check_attack_inputs(model, images, labels)
        if "eps" in kwargs:
            kwargs["eps"] = parse_radius(kwargs["eps"], "eps")
        return attack(model, images, labels, *args, **kwargs)
    return run
