"""Fixed-radius baselines made minimal-norm by a per-image binary search on eps (thesis Sec. 5.5.5.2).

I-FGSM and MI-FGSM (20 iterations) and PGD with the CE or DLR loss (40 iterations,
or 4 restarts x 10 iterations) are run inside a 13-step binary search on the Linf
radius over [0, 2 max_eps] (first radius max_eps = 1, final error 2^-13); a radius
is accepted when the attack reaches APSR >= nu. Inside one run, the returned
point is the evaluated iterate with the highest APSR, so a run of n iterations costs
n forwards and n backwards (13 x 20 = 260, 13 x 40 = 520: Table IV-2).

Losses are summed over the attacked pixels m: CE (maximised, or minimised towards
the target when targeted) and DLR = -DLR+ (eq. 4.4; -tDLR+ of eq. A III-8 when
targeted). PGD steps eps / 30 (relative step 0.1/3, no random start on the first
restart, uniform start in the ball for the others); MI-FGSM accumulates
L1-normalised gradients with decay 1 and steps eps / iterations, as does I-FGSM.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch.nn import functional as F

from robust_seg.attacks.losses import predicted_classes
from robust_seg import IGNORE_INDEX
from robust_seg.attacks.minimal_norm.constraints import dlr_plus
from robust_seg.attacks.minimal_norm.tracking import GRADIENT_FLOOR, AttackProblem, BestIterate
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.apsr import DEFAULT_NU

BINARY_SEARCH_STEPS = 13


def _ascent_loss(logits: torch.Tensor, problem: AttackProblem, loss: str) -> torch.Tensor:
    """Sum over attacked pixels of the loss that the attack maximises."""
    if loss == "ce":
        labels = problem.constraint_labels.masked_fill(~problem.valid, IGNORE_INDEX)
        cross_entropy = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
        return -cross_entropy if problem.targeted else cross_entropy
    if loss == "dlr":
        return -(dlr_plus(logits, problem.constraint_labels, problem.targeted) * problem.valid).sum()
    raise ValueError(f"loss must be 'ce' or 'dlr', got {loss!r}")


def _project(delta: torch.Tensor, images: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    radius = radius.view(-1, 1, 1, 1)
    delta = torch.maximum(torch.minimum(delta, radius), -radius)
    return (images + delta).clamp(0, 1) - images


def _sign_iterations(model, problem: AttackProblem, tracker: BestIterate, radius: torch.Tensor, *,
                     iterations: int, step: torch.Tensor, loss: str, momentum: float | None,
                     random_start: bool) -> None:
    """Iterated sign-gradient ascent in the eps-ball, offering every evaluated iterate to ``tracker``."""
    images = problem.images
    delta = torch.zeros_like(images)
    if random_start:
        delta = _project((2 * torch.rand_like(images) - 1) * radius.view(-1, 1, 1, 1), images, radius)
    accumulated = torch.zeros_like(images)
    for _ in range(iterations):
        delta.requires_grad_(True)
        adv = images + delta
        logits = model(adv)
        predictions = predicted_classes(logits)
        tracker.update(adv, predictions, problem.apsr(predictions), delta.detach().flatten(1).abs().amax(1))
        (gradient,) = torch.autograd.grad(_ascent_loss(logits, problem, loss), delta)
        tracker.count()
        if momentum is not None:
            norm = gradient.flatten(1).abs().sum(1).clamp_min(GRADIENT_FLOOR).view(-1, 1, 1, 1)
            accumulated = momentum * accumulated + gradient / norm
            gradient = accumulated
        delta = _project(delta.detach() + step.view(-1, 1, 1, 1) * gradient.sign(), images, radius)


def ifgsm(model, problem: AttackProblem, tracker: BestIterate, radius: torch.Tensor, *, iterations: int = 20):
    """I-FGSM (Kurakin et al. 2017) at per-image radius, CE loss, step eps / iterations."""
    _sign_iterations(model, problem, tracker, radius, iterations=iterations, step=radius / iterations, loss="ce",
                     momentum=None, random_start=False)


def mifgsm(model, problem: AttackProblem, tracker: BestIterate, radius: torch.Tensor, *, iterations: int = 20,
           decay: float = 1.0):
    """MI-FGSM (Dong et al. 2018) at per-image radius, CE loss, step eps / iterations."""
    _sign_iterations(model, problem, tracker, radius, iterations=iterations, step=radius / iterations, loss="ce",
                     momentum=decay, random_start=False)


def pgd_at_radius(model, problem: AttackProblem, tracker: BestIterate, radius: torch.Tensor, *, loss: str = "ce",
        iterations: int = 40, restarts: int = 1, relative_step: float = 0.1 / 3):
    """PGD (Madry et al. 2018) at per-image radius; restarts after the first start uniformly in the ball."""
    for restart in range(restarts):
        _sign_iterations(model, problem, tracker, radius, iterations=iterations, step=radius * relative_step,
                         loss=loss, momentum=None, random_start=restart > 0)


def binary_search_minimal_norm(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                               attack: Callable, *, targeted: bool = False,
                               target_labels: torch.Tensor | None = None, nu: float = DEFAULT_NU,
                               steps: int = BINARY_SEARCH_STEPS, max_eps: float = 1.0) -> AttackResult:
    """Per-image binary search of the smallest radius at which ``attack`` reaches APSR >= nu.

    ``attack(model, problem, tracker, radius)`` runs at radius (B,) and offers its
    iterates to ``tracker`` (a fresh highest-APSR tracker per run).
    """
    problem = AttackProblem(images, labels, targeted, target_labels)
    best = BestIterate(problem, nu)
    batch = images.shape[0]
    low = torch.zeros(batch, dtype=images.dtype, device=images.device)
    high = torch.full((batch,), 2 * max_eps, dtype=images.dtype, device=images.device)
    for _ in range(steps):
        radius = (low + high) / 2
        run = BestIterate(problem, float("inf"))  # nu = inf: keeps the highest-APSR iterate
        attack(model, problem, run, radius)
        best.count(run.forwards, run.backwards)
        accepted = best.update(run.adv, run.predictions, run.apsr, run.norm)
        high = torch.where(accepted, radius, high)
        low = torch.where(accepted, low, radius)
    return best.result()


def ifgsm_binary_search(model, images, labels, *, targeted=False, target_labels=None, nu=DEFAULT_NU,
                        steps=BINARY_SEARCH_STEPS, iterations=20) -> AttackResult:
    """I-FGSM 13 x 20 (Table 5.1)."""
    return binary_search_minimal_norm(model, images, labels, partial(ifgsm, iterations=iterations),
                                      targeted=targeted, target_labels=target_labels, nu=nu, steps=steps)


def mifgsm_binary_search(model, images, labels, *, targeted=False, target_labels=None, nu=DEFAULT_NU,
                         steps=BINARY_SEARCH_STEPS, iterations=20, decay=1.0) -> AttackResult:
    """MI-FGSM 13 x 20 (Table 5.1)."""
    return binary_search_minimal_norm(model, images, labels, partial(mifgsm, iterations=iterations, decay=decay),
                                      targeted=targeted, target_labels=target_labels, nu=nu, steps=steps)


def pgd_binary_search(model, images, labels, *, targeted=False, target_labels=None, nu=DEFAULT_NU,
                      steps=BINARY_SEARCH_STEPS, loss="ce", iterations=40, restarts=1) -> AttackResult:
    """PGD CE / DLR, 13 x 40 (restarts=1) or 13 x 4 x 10 (iterations=10, restarts=4) (Table 5.1)."""
    return binary_search_minimal_norm(model, images, labels,
                                      partial(pgd_at_radius, loss=loss, iterations=iterations, restarts=restarts),
                                      targeted=targeted, target_labels=target_labels, nu=nu, steps=steps)
