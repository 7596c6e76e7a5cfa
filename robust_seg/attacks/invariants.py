"""Threat-model invariants checked on every batch of every attack."""
from __future__ import annotations

import torch

TOLERANCE = 1e-6


class ThreatModelViolation(RuntimeError):
    """An attack returned an image outside the eps-ball or outside [0, 1]."""


def check_linf_box(adv_images: torch.Tensor, images: torch.Tensor, eps: float | torch.Tensor) -> None:
    """Raise ``ThreatModelViolation`` unless ``||adv - x||_inf <= eps`` per image and ``adv`` in [0, 1].

    ``eps`` is a float or a per-image tensor of shape (B,). Never clips: a
    violation is a bug in the attack and must surface.
    """
    eps = torch.as_tensor(eps, dtype=torch.float64, device=images.device).reshape(-1)
    delta = (adv_images.double() - images.double()).flatten(1).abs().amax(1)
    if bool((delta > eps + TOLERANCE).any()):
        worst = int((delta - eps).argmax())
        raise ThreatModelViolation(
            f"perturbation of image {worst} has Linf norm {float(delta[worst]):.8f} > eps {float(eps[min(worst, eps.numel() - 1)]):.8f}"
        )
    low, high = float(adv_images.min()), float(adv_images.max())
    if low < -TOLERANCE or high > 1 + TOLERANCE:
        raise ThreatModelViolation(f"adversarial images leave the box [0, 1]: range [{low:.8f}, {high:.8f}]")
