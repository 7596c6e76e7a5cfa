"""APGD (Croce & Hein 2020, Linf) for semantic segmentation with const-eps / red-eps radius schedules.

SEA paper Sec. 2.3: APGD replaces fixed-step PGD; progressive radius reduction (red-eps)
runs stages at 2 eps, 1.5 eps, eps (budget 3 : 3 : 4), each later stage starting from the
previous stage's best point projected onto the smaller ball, with the step size reset.

Per stage of N iterations at radius r, batched with per-image state:

- x^(0): the start; eta = 2 r; x^(1) = P_S(x^(0) + eta sign(grad)) (no momentum on the first step);
  x^(k+1) = P_S(x^(k) + 0.75 (z^(k+1) - x^(k)) + 0.25 (x^(k) - x^(k-1))), z^(k+1) = P_S(x^(k) + eta sign(grad)).
- checkpoints w_j = ceil(p_j N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).
  At w_j the step is halved and the iterate reset to the best-objective point x_max (with its
  gradient) if (1) the objective increased in fewer than rho = 0.75 of the steps since w_{j-1}
  (strict "<", as in the APGD paper; the reference code uses "<="), or (2) the step was not
  halved at w_{j-1} and the best objective did not improve since w_{j-1}. At the first
  checkpoint condition (2) compares with the start (w_0 = 0, step "not halved" there), as in
  the paper's algorithm; the reference code instead never fires (2) at the first checkpoint.
- The objective driving these rules is the tracked (unmasked) objective of the loss
  (App. B.1); the gradient is that of the (masked) attack loss.

Returned per image: the iterate with the LOWEST pixel accuracy (targeted: highest agreement
with the target map) among iterates that lie in the final eps-ball, i.e. only iterates of
the final-radius stage (its start included) of every restart; ties keep the earliest.
Choice where the paper is silent: "best point" handed from a red-eps stage to the next is
that stage's lowest-accuracy iterate (as in the official SEA code), not its best-loss point.

Cost per stage of N iterations: N forward+backward passes and one forward-only pass (the
last iterate needs no gradient). Loss values and accuracy of iterate t come from the single
forward at iterate t.
"""
from __future__ import annotations

import math

import torch

from robust_seg.attacks.pgd import (
    AttackObjective,
    Iterate,
    attack_result,
    copy_where,
    draw_image_seeds,
    linf_box_bounds,
    mix_seed,
    project_linf_box,
    uniform_random_start,
    where_per_image,
)
from robust_seg.attacks.result import AttackResult
from robust_seg.attacks.schedules import apgd_checkpoints, radius_schedule, split_budget

LATE_TOLERANCE = 0.01
"""An improvement of the best pixel accuracy by more than this (one percentage point) in the last 10% of the
iterations marks the optimisation as incomplete (extras 'late_improvement')."""
MOMENTUM = 0.75
RHO = 0.75
INITIAL_STEP_FACTOR = 2.0


def apgd_stage(
    objective: AttackObjective, images: torch.Tensor, start: torch.Tensor, radius: float, iterations: int,
    step_offset: int, late_after: int | None = None,
) -> tuple[Iterate, torch.Tensor]:
    """One APGD run of ``iterations`` steps at ``radius`` from ``start``; returns its lowest-score iterate and, per
    image, whether that score still improved by more than ``LATE_TOLERANCE`` after step ``late_after`` (the
    diagnostics' incomplete optimisation).

    ``step_offset``: iterations already spent in this run before the stage (for Bal-CE's t).
    """
    evaluation = objective(start, step_offset + 1, need_gradient=iterations > 0)
    best = Iterate.of(start, evaluation).owned()
    late = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    if iterations == 0:
        return best, late
    points, previous, gradient = start, start, evaluation.gradient
    step = torch.full((images.shape[0], 1, 1, 1), INITIAL_STEP_FACTOR * radius, dtype=images.dtype, device=images.device)
    max_point, max_gradient, max_objective = start.clone(), gradient.clone(), evaluation.objective  # owned: updated in place
    last_objective = evaluation.objective
    increases = torch.zeros(images.shape[0], dtype=torch.int64, device=images.device)
    max_objective_at_check = max_objective
    reduced_at_check = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    checkpoints, last_check = set(apgd_checkpoints(iterations)), 0
    lower, upper = linf_box_bounds(images, radius)
    for k in range(iterations):
        candidate = torch.addcmul(points, step, gradient.sign()).clamp_(lower, upper)  # z^(k+1)
        if k > 0:  # x + a (z - x) + (1 - a)(x - x_prev) = a z + 2 (1 - a) x - (1 - a) x_prev, in place
            candidate.mul_(MOMENTUM).add_(points, alpha=2.0 * (1.0 - MOMENTUM)).sub_(previous, alpha=1.0 - MOMENTUM)
            candidate.clamp_(lower, upper)
        previous, points = points, candidate
        final = k + 1 == iterations
        evaluation = objective(points, step_offset + k + 2, need_gradient=not final)
        if late_after is not None and k == max(late_after, 0):
            score_before_late = best.score.clone()
        best = best.update_where(evaluation.score < best.score, Iterate.of(points, evaluation))
        if final:
            if late_after is not None:  # improved by more than LATE_TOLERANCE during the last 10%
                late = score_before_late - best.score > LATE_TOLERANCE
            break
        gradient = evaluation.gradient
        increases += evaluation.objective > last_objective
        last_objective = evaluation.objective
        improved = evaluation.objective > max_objective
        max_point = copy_where(improved, points, max_point)
        max_gradient = copy_where(improved, gradient, max_gradient)
        max_objective = torch.where(improved, evaluation.objective, max_objective)
        if k + 1 in checkpoints:
            oscillating = increases < RHO * (k + 1 - last_check)
            stalled = ~reduced_at_check & (max_objective <= max_objective_at_check)
            reduce = oscillating | stalled
            step = where_per_image(reduce, step / 2.0, step)
            points = where_per_image(reduce, max_point, points)
            gradient = where_per_image(reduce, max_gradient, gradient)
            last_objective = torch.where(reduce, max_objective, last_objective)
            reduced_at_check, max_objective_at_check = reduce, max_objective
            increases = torch.zeros_like(increases)
            last_check = k + 1
    return best, late


def apgd(
    model,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    loss: str = "mask_ce",
    iterations: int = 300,
    schedule: str = "red",
    restarts: int = 1,
    targeted: bool = False,
    target_labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    image_seeds: list[int] | None = None,
    loss_schedule: str = "stage",
) -> AttackResult:
    """Linf APGD on a segmentation model; see the module docstring for the algorithm.

    iterations: the TOTAL budget, split evenly over ``restarts`` independent runs (the
        paper's const-eps "3 restarts x 100 iterations" is ``schedule="const", restarts=3,
        iterations=300``); each run follows ``schedule`` ('const' or 'red') and starts from
        a uniform random point of its first radius' ball.
    targeted: maximise -loss(u, target_labels) (App. D: -JS towards e.g. a one-class map);
        the returned iterate maximises agreement with the target map, reported in
        extras['target_agreement']; ``accuracy`` is always w.r.t. ``labels``.
    image_seeds: one int per image; image i's random starts depend only on its seed
        (drawn from ``generator`` when None). SEA passes them so that results do not depend
        on which images share the batch.
    extras: 'loss' (tracked objective at the returned iterate, negated loss when targeted),
        'forwards' / 'backwards' (passes per image), 'late_improvement' (bool: the returned iterate's score still
        improved by more than one point of accuracy in the last 10% of the run's iterations: more iterations would
        likely help).
    loss_schedule: how an iteration-dependent loss (Bal-CE's lambda(t) = (t - 1) / 2T) counts t under red-eps:
        ``stage`` restarts t = 1..T at every radius stage, with T that stage's iterations (as the official SEA
        code, ``nmndeep/Robust-Segmentation``, ``semseg/utils/attacker.py``; measured stronger on the shipped model,
        docs/agreement.md); ``run`` counts t = 1..T over the whole run (the paper's text does not say which).
        No effect on the other losses or with const-eps.
    eps == 0 returns the clean predictions after one forward.
    """
    if loss_schedule not in ("stage", "run"):
        raise ValueError(f"loss_schedule must be 'stage' or 'run', got {loss_schedule!r}")
    budgets = split_budget(iterations, restarts)
    if min(budgets) < 1:
        raise ValueError(f"{iterations} iterations cannot be split over {restarts} restarts")
    images = images.detach()
    objective = AttackObjective(model, labels, loss, total_steps=budgets[0], targeted=targeted, target_labels=target_labels)
    if eps == 0:
        clean = objective(images, 1, need_gradient=False)
        outcome = attack_result(images, labels, eps, Iterate.of(images, clean), objective)
        outcome.extras["late_improvement"] = torch.zeros(images.shape[0], dtype=torch.bool)
        return outcome
    seeds = image_seeds if image_seeds is not None else draw_image_seeds(images.shape[0], generator)
    result, late = None, None
    for run, budget in enumerate(budgets):
        objective.total_steps = budget
        stage_best, step_offset = None, 0
        stages = radius_schedule(eps, budget, schedule)
        for stage, (radius, stage_iterations) in enumerate(stages):
            if stage_best is None:
                start = uniform_random_start(images, radius, [mix_seed(seed, run) for seed in seeds])
            else:
                start = project_linf_box(stage_best.adv_images, images, radius)
            if loss_schedule == "stage":
                objective.total_steps = max(stage_iterations, 1)
            late_after = stage_iterations - max(1, math.ceil(0.1 * budget)) if stage == len(stages) - 1 else None
            stage_best, stage_late = apgd_stage(objective, images, start, radius, stage_iterations,
                                                step_offset if loss_schedule == "run" else 0, late_after)
            step_offset += stage_iterations
        better = None if result is None else stage_best.score < result.score
        late = stage_late if late is None else torch.where(better, stage_late, late)
        result = stage_best if result is None else result.replace_where(better, stage_best)
    outcome = attack_result(images, labels, eps, result, objective)
    outcome.extras["late_improvement"] = late.cpu()
    return outcome
