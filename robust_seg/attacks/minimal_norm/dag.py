"""Dense Adversary Generation (Xie et al. 2017) as in thesis Algorithm IV-1.

delta <- delta - eta g / ||g||_inf with g the gradient of m^T max(0, dz), where
dz = z_y - max_{j!=y} z_j (untargeted) or max_{j!=t} z_j - z_t (targeted, mu = -1 in
Alg. IV-1), evaluated at x_tilde = P_[0,1](x + delta). Each image stops as soon as
its pixel success rate reaches nu (lines 9-11), so it costs one forward per
evaluated iterate and one backward per step taken; stopped images leave the batch
(no forward is spent on them). Step sizes of Sec. 5.5.5.1: 0.003 and 0.001.
An image that never reaches nu within N iterations returns its best-APSR iterate.
"""
from __future__ import annotations

import torch

from robust_seg.attacks.minimal_norm.constraints import logit_difference
from robust_seg.attacks.minimal_norm.tracking import AttackProblem, BestIterate
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.apsr import DEFAULT_NU, apsr

GRADIENT_FLOOR = 1e-12


def dag(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False,
        target_labels: torch.Tensor | None = None, nu: float = DEFAULT_NU, step_size: float = 0.003,
        iterations: int = 500) -> AttackResult:
    """DAG with the APSR >= nu stopping rule (Algorithm IV-1)."""
    problem = AttackProblem(images, labels, targeted, target_labels)
    tracker = BestIterate(problem, nu)
    images = problem.images
    batch = images.shape[0]
    delta = torch.zeros_like(images)
    active = torch.ones(batch, dtype=torch.bool)
    for _ in range(iterations):
        index = active.nonzero().squeeze(1).to(images.device)
        if index.numel() == 0:
            break
        step_delta = delta[index].requires_grad_(True)
        adv = (images[index] + step_delta).clamp(0, 1)  # line 4
        logits = model(adv)
        predictions = logits.detach().argmax(1)
        target = None if problem.target_labels is None else problem.target_labels[index]
        rate = apsr(predictions, labels[index], target)  # line 9
        norm = (adv.detach() - images[index]).flatten(1).abs().amax(1)
        is_adv = tracker.update(adv, predictions, rate, norm, index=index)
        differences = logit_difference(logits, problem.constraint_labels[index], targeted)  # line 7
        loss = (differences.clamp_min(0) * problem.valid[index]).sum()  # line 12
        (gradient,) = torch.autograd.grad(loss, step_delta)
        scale = gradient.flatten(1).abs().amax(1).clamp_min(GRADIENT_FLOOR).view(-1, 1, 1, 1)
        still = ~is_adv
        delta[index] = torch.where(still.view(-1, 1, 1, 1), step_delta.detach() - step_size * gradient / scale,
                                   step_delta.detach())  # line 14
        forwards = torch.zeros(batch, dtype=torch.long)
        forwards[index.cpu()] = 1
        backwards = torch.zeros(batch, dtype=torch.long)
        backwards[index.cpu()] = still.long().cpu()
        tracker.count(forwards, backwards)
        active[index.cpu()] = still.cpu()  # lines 10-11
    return tracker.result()
