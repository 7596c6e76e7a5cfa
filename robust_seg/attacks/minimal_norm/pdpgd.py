"""PDPGD Linf (Matyasko & Chau 2021) adapted to segmentation as in thesis App. IV-6.1.

One dual variable per pixel, kept in the log domain and mapped to weights on the
d-simplex with a padded zero (eq. A IV-7):
  lambda_Delta = m~ exp(lambda) / (1 + m~^T exp(lambda)),
Lagrangian (1 - m~^T lambda_Delta) ||delta||_inf + lambda_Delta^T softplus(dz), with dz the
logit difference (negative = fooled). Duals start at -log(r ||m||_1) with r = 1
(eq. A IV-8/9), ascend along sign(dz) with step 0.1 decayed linearly to 0.01, and
the weights enter the primal problem through an EMA (0.9). Primal: Adam
(0.9, 0.999) on the constraint term with step 0.01 decayed exponentially to 1e-4,
followed by the proximal step of the weighted norm and the box.

Choice: the proximal step is computed exactly, in the same diagonal Adam metric as
the gradient step (prox_linf_box of Algorithm 5.1), with weight
step x (1 - sum lambda_Delta) / sum lambda_Delta, instead of the inexact scaled
sub-iterations of the AdaProx-based original. Constraint masking defaults to the
labelled pixels only, the setting the thesis uses for PDPGD (App. IV-6.2).
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from robust_seg.attacks.losses import predicted_classes
from robust_seg.attacks.minimal_norm.alma_prox import dropped_fraction
from robust_seg.attacks.minimal_norm.constraints import decayed_constraint_mask, logit_difference
from robust_seg.attacks.minimal_norm.prox import prox_linf_box
from robust_seg.attacks.minimal_norm.tracking import AttackProblem, BestIterate
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.apsr import DEFAULT_NU

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8


def simplex_weights(log_duals: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Eq. A IV-7: m~ exp(lambda) / (1 + m~^T exp(lambda)) per image, computed stably in float64."""
    logits = log_duals.masked_fill(~kept, float("-inf")).flatten(1)
    padded = F.pad(logits, (1, 0), value=0.0)
    return padded.softmax(1)[:, 1:].view_as(log_duals)


def pdpgd_linf(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False,
               target_labels: torch.Tensor | None = None, nu: float = DEFAULT_NU, iterations: int = 500,
               primal_step: float = 0.01, primal_decay: float = 0.01, dual_step: float = 0.1,
               dual_decay: float = 0.1, dual_ema: float = 0.9, dual_ratio_init: float = 1.0,
               dual_bound: float = 1e-12, constraint_masking: str = "none") -> AttackResult:
    """PDPGD Linf for segmentation; one forward and one backward per iteration."""
    problem = AttackProblem(images, labels, targeted, target_labels)
    tracker = BestIterate(problem, nu)
    images = problem.images
    valid = problem.valid
    log_bound = -math.log(dual_bound)
    initial = -(problem.valid_counts.double() * dual_ratio_init).log().to(images.device)  # eq. A IV-9
    log_duals = initial.view(-1, 1, 1).expand(valid.shape).clone()
    weights_ema = simplex_weights(log_duals, valid)
    first_moment = torch.zeros_like(images)
    second_moment = torch.zeros_like(images)
    delta = torch.zeros_like(images)
    for i in range(iterations):
        delta.requires_grad_(True)
        adv = images + delta
        logits = model(adv)
        predictions = predicted_classes(logits)
        tracker.update(adv, predictions, problem.apsr(predictions), delta.detach().flatten(1).abs().amax(1))
        differences = logit_difference(logits, problem.constraint_labels, targeted)
        kept = decayed_constraint_mask(differences.detach(), valid, problem.valid_counts,
                                       dropped_fraction(constraint_masking, nu, i + 1, iterations))
        if i:
            weights_ema = dual_ema * weights_ema + (1 - dual_ema) * simplex_weights(log_duals, kept)
        weights = weights_ema * kept
        loss = (F.softplus(differences) * weights.to(differences.dtype)).sum()
        (gradient,) = torch.autograd.grad(loss, delta)
        tracker.count()

        first_moment.mul_(ADAM_BETAS[0]).add_(gradient, alpha=1 - ADAM_BETAS[0])
        second_moment.mul_(ADAM_BETAS[1]).addcmul_(gradient, gradient, value=1 - ADAM_BETAS[1])
        metric = (second_moment / (1 - ADAM_BETAS[1] ** (i + 1))).sqrt_().add_(ADAM_EPSILON)
        step = primal_step * primal_decay ** (i / iterations)
        forward = delta.detach() - step * first_moment / (1 - ADAM_BETAS[0] ** (i + 1)) / metric
        weight_sum = weights.flatten(1).sum(1).clamp_min(dual_bound)
        norm_weight = (step * (1 - weight_sum) / weight_sum).to(images.dtype)
        delta = prox_linf_box(forward, images, norm_weight, metric=metric)

        dual_rate = dual_step * ((iterations - 1 - i) / max(iterations - 1, 1) * (1 - dual_decay) + dual_decay)
        log_duals = (log_duals + dual_rate * differences.detach().sign().double() * kept).clamp(-log_bound, log_bound)
    return tracker.result()
