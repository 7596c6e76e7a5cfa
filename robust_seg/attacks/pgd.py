"""Fixed-step Linf PGD (Madry et al. 2018) and the primitives APGD shares with it.

PGD iterates x^(t+1) = P_S(x^(t) + alpha sign(grad g(x^(t)))) on the set
S = {z : ||z - x||_inf <= eps, z in [0, 1]} (SEA paper Sec. 2.3, written there for
minimising; here the attack loss is maximised). As for the SegPGD / CosPGD baselines of
the paper (App. B.1), the iterate with the highest loss is kept per image.

Shared primitives: projection onto S, per-image seeded random starts, and
``AttackObjective``, which evaluates model, loss, gradient, predictions and accuracy from
ONE forward (and at most one backward) per iterate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from robust_seg import IGNORE_INDEX
from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.losses import get_loss, labelled_pixels, predicted_classes
from robust_seg.attacks.progress import tick
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.segmentation import pixel_accuracy

_MASK64 = (1 << 64) - 1

PAPER_STEP_SIZES_300_ITERATIONS = {0.25: 8e-4, 0.5: 9e-4, 1.0: 1e-3, 2.0: 2e-3, 4.0: 4e-3, 8.0: 5e-3, 12.0: 6e-3}
"""PGD step size by radius (in units of 1/255) for SegPGD / CosPGD with 300 iterations.

Radii 2, 4, 8, 12: App. B.1 (Table 1). Radii 0.25, 0.5, 1 are not in the paper; they come
from the reference implementation's SegPGD table (REFERENCE.md), which gives 3e-3 at 4/255
where the paper says 4e-3: the paper wins.
"""

PAPER_STEP_SIZES_100_ITERATIONS = {4.0: 5e-3, 8.0: 1e-2, 12.0: 1e-2, 16.0: 1e-2}
"""PGD step size by radius (1/255) for the 100-iteration PGD-vs-APGD comparison (App. C.1, Table 7)."""


def short_pgd_step_size(eps: float, iterations: int) -> float:
    """2.5 eps / iterations, the usual step of a few-step PGD (Madry et al. 2018): the quick robustness checks of
    training and pre-training, and the diagnostics' attack at eps = 1."""
    return 2.5 * eps / max(iterations, 1)


def paper_step_size(eps: float, iterations: int = 300) -> float:
    """The PGD step size for radius ``eps`` (in [0, 1] units) and a budget of ``iterations``.

    The paper's tables where they apply (300 iterations: App. B.1; 100 iterations: App. C.1). For any other
    radius or budget, the rule (the project's, documented in the README): the 300-iteration table's step size,
    interpolated linearly in the radius between the table's radii (constant beyond its ends), times
    300 / iterations (the same total path length), at most eps (one step may cross the whole ball).
    """
    table = {300: PAPER_STEP_SIZES_300_ITERATIONS, 100: PAPER_STEP_SIZES_100_ITERATIONS}.get(iterations, {})
    for radius, step in table.items():
        if math.isclose(eps * 255, radius, rel_tol=1e-6):
            return step
    radii = sorted(PAPER_STEP_SIZES_300_ITERATIONS)
    scaled = min(max(eps * 255, radii[0]), radii[-1])
    upper = next(r for r in radii if r >= scaled)
    lower = max(r for r in radii if r <= scaled)
    low_step, high_step = PAPER_STEP_SIZES_300_ITERATIONS[lower], PAPER_STEP_SIZES_300_ITERATIONS[upper]
    step = low_step if upper == lower else low_step + (high_step - low_step) * (scaled - lower) / (upper - lower)
    return min(step * 300 / iterations, eps)


def linf_box_bounds(images: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinate bounds of S = {||z - x||_inf <= radius} intersected with [0, 1]: (max(x - r, 0), min(x + r, 1))."""
    return (images - radius).clamp_(min=0.0), (images + radius).clamp_(max=1.0)


def project_linf_box(points: torch.Tensor, images: torch.Tensor, radius: float) -> torch.Tensor:
    """P_S: the closest point of S (coordinate-wise clamp). In loops, clamp to ``linf_box_bounds`` once computed."""
    return torch.clamp(points, *linf_box_bounds(images, radius))


def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (splitmix64 finaliser applied per part)."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (int(part) & _MASK64)) & _MASK64
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        state = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        state = ((state ^ (state >> 27)) * 0x94D049BB133111EB) & _MASK64
        state ^= state >> 31
    return state >> 1


def draw_image_seeds(batch_size: int, generator: torch.Generator | None) -> list[int]:
    """One seed per image from ``generator`` (on its own device; the global CPU RNG when None)."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(0, 2**62, (batch_size,), generator=generator, device=device).tolist()


def uniform_random_start(images: torch.Tensor, radius: float, seeds: list[int]) -> torch.Tensor:
    """x + U[-radius, radius]^d clipped to [0, 1]; image i's noise depends only on ``seeds[i]``.

    Per-image generators make an image's start independent of which other images share the
    batch (SEA's skipping relies on it). Drawn on the CPU, then moved to the images' device.
    """
    noise = torch.stack(
        [torch.rand(images.shape[1:], generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    )
    noise = noise.to(device=images.device, dtype=images.dtype)
    return project_linf_box(images + radius * (2.0 * noise - 1.0), images, radius)


@dataclass
class Evaluation:
    """Everything one forward (+ backward) at an iterate gives, per image.

    objective: tracked objective (maximised); gradient: of the gradient loss w.r.t. the input
    (None when not requested); score: pixel accuracy (untargeted) or minus agreement with the
    target map (targeted), so that lower is always a stronger attack.
    """

    objective: torch.Tensor
    gradient: torch.Tensor | None
    predictions: torch.Tensor
    score: torch.Tensor


class AttackObjective:
    """Evaluates a registry loss on a model at an iterate: one forward, one optional backward.

    Targeted mode (App. D): the attack maximises the negated loss towards ``target_labels``
    (e.g. -JS(p || e_target)); only losses marked ``targetable`` are allowed.
    Gradients are taken w.r.t. the input only (``torch.autograd.grad``); the model's mode and
    parameters are never touched.
    """

    def __init__(self, model, labels, loss: str, *, total_steps: int, targeted: bool = False, target_labels=None):
        self.model = model
        self.labels = labels
        self.loss = get_loss(loss)
        self.total_steps = max(total_steps, 1)
        self.targeted = targeted
        if targeted:
            if target_labels is None:
                raise ValueError("targeted attacks need target_labels")
            if not self.loss.targetable:
                raise ValueError(f"loss {loss!r} has no targeted form; use 'js' (App. D) or 'ce'")
        self.loss_labels = target_labels if targeted else labels
        self.labelled = labelled_pixels(self.loss_labels)  # the label mask, computed once for every iterate
        self.loss_pixels = self.labelled[0].flatten(1).sum(1).clamp_min(1)
        # Labels with ignored pixels set to -1 (never predicted) and pixel counts, computed once:
        # the score of an iterate is then one comparison and one sum.
        score_labels = self.loss_labels if targeted else labels
        score_valid = score_labels != IGNORE_INDEX
        self.score_labels = torch.where(score_valid, score_labels, torch.full_like(score_labels, -1))
        self.score_pixels = score_valid.flatten(1).sum(1).clamp_min(1).double()
        self.forwards = 0
        self.backwards = 0

    def score(self, predictions: torch.Tensor) -> torch.Tensor:
        """Lower is a stronger attack: pixel accuracy (``pixel_accuracy``), or minus agreement with the target map."""
        agreement = (predictions == self.score_labels).flatten(1).sum(1) / self.score_pixels
        return -agreement if self.targeted else agreement

    def per_image_mean(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``losses.per_image_mean`` with the labelled-pixel counts computed once."""
        return pixel_values.flatten(1).sum(1) / self.loss_pixels.to(pixel_values.dtype)

    def __call__(self, points: torch.Tensor, step: int, need_gradient: bool = True) -> Evaluation:
        draws = getattr(self.model, "eot_samples", 1) if need_gradient else 1
        if draws > 1:
            return self._expectation(points, step, draws)
        step = min(max(step, 1), self.total_steps)
        sign = -1.0 if self.targeted else 1.0
        self.forwards += 1
        tick()
        with torch.enable_grad() if need_gradient else torch.no_grad():
            if need_gradient:
                points = points.detach().requires_grad_(True)
            logits = self.model(points)
            predictions = predicted_classes(logits)
            gradient_map, objective_map = self.loss.evaluate(
                logits, self.loss_labels, step=step, total_steps=self.total_steps, predictions=predictions,
                labelled=self.labelled)
            objective = sign * self.per_image_mean(objective_map.detach())
            gradient = None
            if need_gradient:
                self.backwards += 1
                # Gradient of the SUM over pixels: for a model that treats the images of a batch
                # independently (eval mode), image i's gradient is that of its per-image mean times
                # the positive constant (labelled pixels of i), so its sign -- all that PGD/APGD use --
                # is the same, and the un-normalised sum keeps the fused backward of the loss cheap.
                (gradient,) = torch.autograd.grad(gradient_map.sum() * sign, points)
        return Evaluation(objective, gradient, predictions, self.score(predictions))

    def _expectation(self, points: torch.Tensor, step: int, draws: int) -> Evaluation:
        """EOT (Athalye et al. 2018, Sec. 4.2) for a randomized model: the gradient and the objective are the means
        over ``draws`` forwards (each a new draw of the model's randomness); predictions and score are the last
        draw's, as the model would answer once."""
        total_gradient, total_objective = None, None
        for _ in range(draws):
            evaluation = self._single(points, step)
            total_gradient = evaluation.gradient if total_gradient is None else total_gradient + evaluation.gradient
            total_objective = evaluation.objective if total_objective is None else \
                total_objective + evaluation.objective
        return Evaluation(total_objective / draws, total_gradient / draws, evaluation.predictions, evaluation.score)

    def _single(self, points: torch.Tensor, step: int) -> Evaluation:
        draws, self.model.eot_samples = self.model.eot_samples, 1
        try:
            return self(points, step)
        finally:
            self.model.eot_samples = draws


def where_per_image(better: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image, ``source`` where ``better`` (B,) else ``target``, as a new tensor."""
    return torch.where(better.reshape(-1, *[1] * (target.dim() - 1)), source, target)


def copy_where(better: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per image, ``source`` where ``better`` (B,) else ``target``: the attacks' per-iteration record update.

    On the CPU ``target``, which the caller must own (no other reference may see it change), is updated in place
    and only the selected images are copied: fewer bytes than ``torch.where``'s full rewrite of every record at
    every iteration. On other devices ``torch.where`` (a new tensor), which needs no host synchronisation.
    """
    if target.device.type != "cpu":
        return where_per_image(better, source, target)
    rows = better.nonzero().squeeze(1)
    if rows.numel():
        target.index_copy_(0, rows, source.index_select(0, rows))
    return target


@dataclass
class Iterate:
    """A per-image record of one iterate: point, predictions, score, objective."""

    adv_images: torch.Tensor
    predictions: torch.Tensor
    score: torch.Tensor
    objective: torch.Tensor

    @classmethod
    def of(cls, points: torch.Tensor, evaluation: Evaluation) -> "Iterate":
        return cls(points, evaluation.predictions, evaluation.score, evaluation.objective)

    def owned(self) -> "Iterate":
        """A copy that shares no tensor, for ``update_where``."""
        return Iterate(*(tensor.clone() for tensor in self._fields()))

    def update_where(self, better: torch.Tensor, other: "Iterate") -> "Iterate":
        """``replace_where`` on a record this loop owns (``owned``), updated in place where possible
        (:func:`copy_where`)."""
        return Iterate(*(copy_where(better, new, old) for new, old in zip(other._fields(), self._fields())))

    def replace_where(self, better: torch.Tensor, other: "Iterate") -> "Iterate":
        """Per image: ``other`` where ``better`` (B,) else self."""
        return Iterate(*(where_per_image(better, new, old) for new, old in zip(other._fields(), self._fields())))

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return self.adv_images, self.predictions, self.score, self.objective


def attack_result(
    images: torch.Tensor, labels: torch.Tensor, eps: float, best: Iterate, objective: AttackObjective
) -> AttackResult:
    """Checks the threat model and packs a per-image ``Iterate`` into an ``AttackResult``."""
    check_linf_box(best.adv_images, images, eps)
    batch = images.shape[0]
    extras = {
        "loss": best.objective,
        "forwards": torch.full((batch,), objective.forwards, dtype=torch.int64),
        "backwards": torch.full((batch,), objective.backwards, dtype=torch.int64),
    }
    if objective.targeted:
        extras["target_agreement"] = -best.score
    return AttackResult(best.adv_images.detach(), best.predictions, 100 * pixel_accuracy(best.predictions, labels),
                        extras)


def pgd(
    model,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    loss: str = "ce",
    iterations: int,
    step_size: float | str = "paper",
    random_start: bool = False,
    targeted: bool = False,
    target_labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    image_seeds: list[int] | None = None,
) -> AttackResult:
    """Fixed-step sign-gradient PGD maximising ``loss``; returns the best-objective iterate per image.

    The start (the clean image, or a uniform random point of the eps-ball when
    ``random_start``) counts as iterate 0: iterates 0..T-1 cost a forward+backward each and
    iterate T a forward only. Iteration-dependent losses see t = 1..T at the gradient that
    produces iterate t. For masked losses the "loss" compared is the unmasked tracked
    objective (as in APGD). ``eps == 0`` returns the clean predictions after one forward. ``step_size="paper"``:
    the paper's step size for ``eps`` and ``iterations`` (:func:`paper_step_size`).
    """
    objective = AttackObjective(model, labels, loss, total_steps=iterations, targeted=targeted, target_labels=target_labels)
    images = images.detach()
    if eps == 0 or iterations == 0:
        return attack_result(images, labels, eps, Iterate.of(images, objective(images, 1, need_gradient=False)), objective)
    if isinstance(step_size, str):
        if step_size != "paper":
            raise ValueError(f"step_size={step_size!r}: a number, or 'paper' for the paper's rule")
        step_size = paper_step_size(eps, iterations)
    if random_start:
        seeds = image_seeds if image_seeds is not None else draw_image_seeds(images.shape[0], generator)
        points = uniform_random_start(images, eps, seeds)
    else:
        points = images.clone()
    evaluation = objective(points, 1)
    best = Iterate.of(points, evaluation).owned()
    lower, upper = linf_box_bounds(images, eps)
    for t in range(1, iterations + 1):
        points = torch.add(points, evaluation.gradient.sign_(), alpha=step_size).clamp_(lower, upper)  # gradient not reused
        evaluation = objective(points, t + 1, need_gradient=t < iterations)
        best = best.update_where(evaluation.objective > best.objective, Iterate.of(points, evaluation))
    return attack_result(images, labels, eps, best, objective)

