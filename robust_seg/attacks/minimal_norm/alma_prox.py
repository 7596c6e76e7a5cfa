"""ALMA prox: minimal Linf adversarial perturbations for segmentation (thesis Ch. 5, Algorithm IV-2).

Minimises ||delta||_inf + iota_Lambda(delta) + m~^T P(w d, rho, mu) (eq. 5.5, 5.7) with
d = DLR+(f(x + delta), y) + eps per pixel (eq. 5.3; tDLR+ when targeted), by a
variable-metric forward-backward iteration (eq. 5.17) whose backward step is the
ternary-search prox of Algorithm 5.1 in the diagonal Adam-like metric of eq. 5.18.

Per iteration t = 1..N (one forward and one backward of the model):
  w      constraint scale, eq. 5.8 (x 1/(1 - gamma_w) if APSR < nu else x 1/(1 + gamma_w), clipped to [w_min, 1])
  m~     constraint mask, eq. 5.6 (drop the (1 - nu)(t - 1)/(N - 1) largest constraints)
  mu     multiplier EMA, Alg. IV-2 l. 12-13: mu <- clip(alpha mu + (1 - alpha) m~ P'(w d, rho, mu))
  rho    every M steps, x gamma for kept constraints that were neither satisfied in the last M
         steps nor improved (d_t > tau d_{t-M}), Alg. IV-2 l. 14-20
  delta  prox^H_{lambda_t h1}(delta - lambda_t H^{-1} grad), eq. 5.17-5.18

Choices where the thesis is not explicit (documented here and in the report):
- Line 12 writes grad_d of m~^T P(w d); the multiplier is taken as P' evaluated at the
  scaled constraint w d (eq. 4.8 applied to the constraint of eq. 5.7), without the
  extra chain-rule factor w.
- Line 5 of Alg. IV-2 compares the APSR with tau; eq. 5.8 with nu. Eq. 5.8 is used.
- Lines 14-20 as printed would multiply rho at every step that is not a check step;
  rho only changes at check steps (t mod M = 0), and only for constraints kept by m~.
  The reference d_{t-M} of the first check is d_1.
- mu is clipped to [mu_min, mu_max] = [1e-6, 1e12] (Sec. 4.4, the ALMA values; Ch. 5
  gives none). tau = 0.95, M = 10 also come from Sec. 4.4.
- eps of eq. 5.3 = 1e-4, added to DLR+; eps of eq. 5.18 = 1e-8.
- Step size (Sec. 5.5.5.3: 1e-3 decayed to 1e-4): constant until the image first
  reaches APSR >= nu (at the latest N/2, so the decay always happens), then
  exponential decay to lambda_N at t = N (the exploration / exploitation schedule of
  Sec. 4.3.2.3).
- Penalty parameters and multipliers are kept in float64.
"""
from __future__ import annotations

import torch

from robust_seg.attacks.minimal_norm.constraints import decayed_constraint_mask, dlr_plus, top_logits
from robust_seg.attacks.minimal_norm.penalties import p2_penalty_derivative
from robust_seg.attacks.minimal_norm.prox import DEFAULT_PRECISION, prox_linf_box
from robust_seg.attacks.minimal_norm.tracking import AttackProblem, BestIterate
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.apsr import DEFAULT_NU

CONSTRAINT_MASKING = ("none", "fixed", "decay")
"""m (labelled pixels only), m~ (drop 1 - nu of the largest) or m~^(t) (linear decay, eq. 5.6): App. IV-6.2."""


def dropped_fraction(masking: str, nu: float, t: int, iterations: int) -> float:
    """Fraction of the largest constraints discarded at iteration t (1-based) by each masking strategy."""
    if masking not in CONSTRAINT_MASKING:
        raise ValueError(f"constraint_masking must be one of {CONSTRAINT_MASKING}, got {masking!r}")
    if masking == "none":
        return 0.0
    if masking == "fixed":
        return 1.0 - nu
    return (1.0 - nu) * (t - 1) / max(iterations - 1, 1)


def step_size_schedule(t: int, first_success: torch.Tensor, iterations: int, initial: float,
                       final: float) -> torch.Tensor:
    """lambda_t per image: ``initial`` until ``first_success`` (B,), then exponential decay to ``final`` at t = N."""
    elapsed = (t - first_success).clamp_min(0).double()
    span = (iterations - first_success).clamp_min(1).double()
    return initial * (final / initial) ** (elapsed / span)


def alma_prox(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False,
              target_labels: torch.Tensor | None = None, nu: float = DEFAULT_NU, iterations: int = 500,
              step_size_init: float = 1e-3, step_size_final: float = 1e-4, alpha: float = 0.8,
              mu_init: float = 1.0, rho_init: float = 0.01, rho_increase: float = 2.0, check_every: int = 10,
              improvement_rate: float = 0.95, scale_min: float = 0.1, scale_rate: float = 0.02,
              mu_min: float = 1e-6, mu_max: float = 1e12, constraint_margin: float = 1e-4,
              metric_epsilon: float = 1e-8, prox_precision: float = DEFAULT_PRECISION,
              constraint_masking: str = "decay") -> AttackResult:
    """ALMA prox (Algorithm IV-2), untargeted or targeted (labels are always the ground truth).

    Defaults are Sec. 5.5.5.3: N = 500, lambda 1e-3 -> 1e-4, alpha = 0.8, mu0 = 1,
    rho0 = 0.01, gamma = 2, gamma_w = 0.02, w_min = 0.1, nu = 0.99.
    extras: 'norm', 'apsr', 'success', 'forwards', 'backwards' (per image).
    """
    problem = AttackProblem(images, labels, targeted, target_labels)
    tracker = BestIterate(problem, nu)
    images = problem.images
    batch, device = images.shape[0], images.device
    pixel_shape = problem.valid.shape
    to_pixels = lambda per_image: per_image.view(-1, 1, 1)

    delta = torch.zeros_like(images)
    second_moment = torch.zeros_like(images)
    mu = torch.full(pixel_shape, mu_init, dtype=torch.float64, device=device)
    rho = torch.full(pixel_shape, rho_init, dtype=torch.float64, device=device)
    scale = torch.ones(batch, dtype=torch.float64, device=device)
    first_success = torch.full((batch,), iterations // 2, dtype=torch.long, device=device)
    satisfied_recently = torch.zeros(pixel_shape, dtype=torch.bool, device=device)
    reference_constraints = None

    for t in range(1, iterations + 1):
        delta.requires_grad_(True)
        adv = images + delta
        logits = model(adv)
        top = top_logits(logits, targeted)
        constraints = dlr_plus(logits, problem.constraint_labels, targeted, top=top) + constraint_margin
        predictions = top.indices[:, 0]
        apsr_values = problem.apsr(predictions)
        is_adv = tracker.update(adv, predictions, apsr_values, delta.detach().flatten(1).abs().amax(1))
        if t <= iterations // 2:
            first_success = torch.where(is_adv & (first_success == iterations // 2), t, first_success)

        scale = (scale / torch.where(is_adv, 1 + scale_rate, 1 - scale_rate)).clamp(scale_min, 1.0)  # eq. 5.8
        d = constraints.detach().double()
        kept = decayed_constraint_mask(d, problem.valid, problem.valid_counts,
                                       dropped_fraction(constraint_masking, nu, t, iterations))  # eq. 5.6
        scaled = to_pixels(scale) * d
        mu_hat = kept * p2_penalty_derivative(scaled, rho, mu)
        mu = (alpha * mu + (1 - alpha) * mu_hat).clamp(mu_min, mu_max)

        satisfied_recently |= d <= 0
        if reference_constraints is None:
            reference_constraints = d
        elif t % check_every == 0:
            improved = satisfied_recently | (d <= improvement_rate * reference_constraints)
            rho = torch.where(kept & ~improved, rho_increase * rho, rho)
            reference_constraints = d
            satisfied_recently = torch.zeros_like(satisfied_recently)

        loss_gradient = kept * to_pixels(scale) * p2_penalty_derivative(scaled, rho, mu)
        (gradient,) = torch.autograd.grad(constraints, delta, grad_outputs=loss_gradient.to(constraints.dtype))
        tracker.count()

        second_moment.mul_(alpha).addcmul_(gradient, gradient, value=1 - alpha)
        metric = (second_moment / (1 - alpha ** t)).sqrt_().add_(metric_epsilon)  # eq. 5.18
        step = step_size_schedule(t, first_success, iterations, step_size_init, step_size_final).to(images.dtype)
        forward = delta.detach() - step.view(-1, 1, 1, 1) * gradient / metric
        delta = prox_linf_box(forward, images, step, metric=metric, precision=prox_precision)  # eq. 5.17

    return tracker.result()
