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

from robust_seg.attacks.losses import predicted_classes
from robust_seg.attacks.minimal_norm.constraints import logit_difference
from robust_seg.attacks.minimal_norm.tracking import GRADIENT_FLOOR, AttackProblem, BestIterate
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.apsr import DEFAULT_NU, apsr



def dag(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False,
        target_labels: torch.Tensor | None = None, nu: float = DEFAULT_NU, step_size: float = 0.003,
        iterations: int = 500) -> AttackResult:
    """DAG with the APSR >= nu stopping rule (Algorithm IV-1).

    Speed: while every image is still active the batch is used as it is (no gathers, the attacked-pixel mask and
    counts of ``AttackProblem`` computed once, the tracker's in-place path); once images stop, the active ones are
    gathered. Most of the per-iteration cost beyond the model's pass was these copies.
    """
    problem = AttackProblem(images, labels, targeted, target_labels)
    tracker = BestIterate(problem, nu)
    images = problem.images
    batch = images.shape[0]
    delta = torch.zeros_like(images)
    active = torch.ones(batch, dtype=torch.bool)
    everyone = torch.ones(batch, dtype=torch.long)
    for _ in range(iterations):
        count = int(active.sum())
        if count == 0:
            break
        if count == batch:  # every image active: the whole batch, no index
            index, clean, constraint_labels, valid = None, images, problem.constraint_labels, problem.valid
            step_delta = delta.requires_grad_(True)
        else:
            index = active.nonzero().squeeze(1).to(images.device)
            clean, constraint_labels, valid = images[index], problem.constraint_labels[index], problem.valid[index]
            step_delta = delta[index].requires_grad_(True)
        adv = (clean + step_delta).clamp(0, 1)  # line 4
        logits = model(adv)
        predictions = predicted_classes(logits)
        if index is None:
            rate = problem.apsr(predictions)  # line 9
        else:
            target = None if problem.target_labels is None else problem.target_labels[index]
            rate = apsr(predictions, labels[index], target)
        norm = (adv.detach() - clean).flatten(1).abs().amax(1)
        is_adv = tracker.update(adv, predictions, rate, norm, index=index)
        differences = logit_difference(logits, constraint_labels, targeted)  # line 7
        loss = (differences.clamp_min(0) * valid).sum()  # line 12
        (gradient,) = torch.autograd.grad(loss, step_delta)
        step_delta = step_delta.detach()
        scale = gradient.flatten(1).abs().amax(1).clamp_min(GRADIENT_FLOOR).view(-1, 1, 1, 1)
        still = ~is_adv
        factor = torch.where(still.view(-1, 1, 1, 1), -step_size / scale, torch.zeros_like(scale))
        moved = step_delta.addcmul_(gradient, factor)  # line 14: delta - eta g / ||g||_inf while not adversarial
        still = still.cpu()
        if index is None:
            delta = moved
            tracker.count(everyone, still.long())
        else:
            delta[index] = moved
            forwards = torch.zeros(batch, dtype=torch.long)
            forwards[index.cpu()] = 1
            backwards = torch.zeros(batch, dtype=torch.long)
            backwards[index.cpu()] = still.long()
            tracker.count(forwards, backwards)
            active[index.cpu()] = still
            continue
        active = still.clone()  # lines 10-11
    return tracker.result()
