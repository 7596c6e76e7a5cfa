"""Fast Minimum-Norm Linf attack (Pintor et al. 2021) adapted to segmentation (thesis Sec. 5.5.5.2).

Adaptation: the loss is the logit difference averaged over the attacked pixels m
(negative = fooled), and the binary decision that shrinks or grows the radius is
APSR >= nu. Linf variant: gradient step alpha g / ||g||_2 on the loss, projection onto
the eps-ball and the box; eps shrinks by (1 - gamma) around adversarial points,
grows by (1 + gamma) after the first one, and before any is found jumps to
||delta||_inf + |loss| / ||g||_1 (distance to the linearised boundary, dual norm
L1). alpha (init 10, Sec. 5.5.5.2; final alpha_init / 100) and gamma (0.05 -> 0.001)
follow cosine annealing as in FMN.
"""
from __future__ import annotations

import math

import torch

from robust_seg.attacks.losses import predicted_classes
from robust_seg.attacks.minimal_norm.constraints import logit_difference
from robust_seg.attacks.minimal_norm.tracking import GRADIENT_FLOOR, AttackProblem, BestIterate
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.apsr import DEFAULT_NU



def fmn_linf(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False,
             target_labels: torch.Tensor | None = None, nu: float = DEFAULT_NU, iterations: int = 500,
             alpha_init: float = 10.0, alpha_final: float | None = None, gamma_init: float = 0.05,
             gamma_final: float = 0.001) -> AttackResult:
    """FMN Linf for segmentation; one forward and one backward per iteration."""
    problem = AttackProblem(images, labels, targeted, target_labels)
    tracker = BestIterate(problem, nu)
    images = problem.images
    batch = images.shape[0]
    view = lambda per_image: per_image.view(-1, 1, 1, 1)
    alpha_final = alpha_init / 100 if alpha_final is None else alpha_final
    valid_counts = problem.valid.flatten(1).sum(1).clamp_min(1)
    largest_norm = torch.maximum(images, 1 - images).flatten(1).amax(1)
    radius = torch.full((batch,), float("inf"), dtype=images.dtype, device=images.device)
    found = torch.zeros(batch, dtype=torch.bool, device=images.device)
    delta = torch.zeros_like(images)
    for i in range(iterations):
        cosine = (1 + math.cos(math.pi * i / iterations)) / 2
        alpha = alpha_final + (alpha_init - alpha_final) * cosine
        gamma = gamma_final + (gamma_init - gamma_final) * cosine

        delta.requires_grad_(True)
        adv = images + delta
        logits = model(adv)
        predictions = predicted_classes(logits)
        norm = delta.detach().flatten(1).abs().amax(1)
        is_adv = tracker.update(adv, predictions, problem.apsr(predictions), norm)
        differences = logit_difference(logits, problem.constraint_labels, targeted)
        loss = -(differences * problem.valid).flatten(1).sum(1) / valid_counts
        (gradient,) = torch.autograd.grad(loss.sum(), delta)
        tracker.count()

        boundary = loss.detach().abs() / gradient.flatten(1).abs().sum(1).clamp_min(GRADIENT_FLOOR)
        best_norm = tracker.norm.to(images.dtype)
        radius = torch.where(is_adv, torch.minimum(radius * (1 - gamma), best_norm),
                             torch.where(found, radius * (1 + gamma), norm + boundary))
        radius = torch.minimum(radius, largest_norm)
        found = found | is_adv

        step = gradient / view(gradient.flatten(1).norm(dim=1).clamp_min(GRADIENT_FLOOR))
        delta = delta.detach() + alpha * step
        delta = torch.maximum(torch.minimum(delta, view(radius)), -view(radius))
        delta = (images + delta).clamp(0, 1) - images
    return tracker.result()
