"""Proximity operator of lambda ||.||_inf + indicator of the image box (thesis Sec. 5.4.2.1, Algorithm 5.1).

prox(delta) = argmin_p  1/2 ||p - delta||_H^2 + lambda ||p||_inf + iota_Lambda(p),
Lambda = [0, 1]^n - x, H = Diag(metric) (identity when ``metric`` is None, eq. 5.16).

For a fixed beta = ||p||_inf the minimiser is p_beta = clip(P_Lambda(delta), -beta, beta)
(the box projection is the same in any diagonal metric, Sec. 5.4.2.2), and the
optimal beta minimises the convex function (5.14) on [0, ||P_Lambda(delta)||_inf]
(Proposition 5.1). Algorithm 5.1 finds it by ternary search.

Vectorisation choices: every image of the batch runs the same loop, for the largest
of the images' step counts (a few device syncs per call); an image stops moving after
its own count, so its result does not depend on the rest of the batch. Each image's
count is line 4's: the fewest steps that end its bracket no wider than Delta beta = 1e-5
(29 from [0, 1] at worst, as the thesis states). The bracket starts from [0, u] (lines 2-3) narrowed by line
12's own test on the pairs (u - w, u) for up to three widths w (``BRACKET_WIDTHS`` x
lambda, narrowest first, until every image has one), which is exact by convexity and
cuts the 29 steps of an ALMA prox call to ~1-20. Both trial points are evaluated in
one pass over a stacked buffer, and all buffers are allocated once per attack
(``LinfBoxProx``).
Since P_Lambda keeps the sign of each component, (p_beta - delta)_i^2 =
(min(|a_i|, beta) - |delta_i|)^2 with a = P_Lambda(delta). Lines 10-12 only need the
sign of f_l - f_u, which is computed directly as
sum_i H_i (m_l - m_u)(m_l + m_u - 2|delta_i|) + 2 lambda (beta_l - beta_u) (m = min(|a|, beta)):
components with |a_i| <= beta_l contribute exactly zero, so the comparison keeps its
precision in float32 on images with millions of components (evaluating f_l and f_u
separately loses it to cancellation).
"""
from __future__ import annotations

import math

import torch

DEFAULT_PRECISION = 1e-5
"""Delta beta of Sec. 5.4.2.1."""

BRACKET_WIDTHS = (1 / 32, 1 / 4, 4.0)
"""Widths (x lambda) below ||P_Lambda(delta)||_inf tried as lower bounds of beta* before the search.

In ALMA prox's forward-backward iteration a step moves every component by at most a
few lambda, and beta* lies within lambda / 32 or lambda / 4 (failed attack, norm growing)
or 4 lambda (successful attack, norm shrinking) of the largest component in nearly every
call; the ternary search then needs ~1-8, ~13 or ~20 steps instead of 29. Each width
costs about half a ternary step; wider ones are only tried while some image has none."""


def ternary_search_steps(precision: float = DEFAULT_PRECISION, upper_bound: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Line 4 of Algorithm 5.1: ceil(log(precision / u) / log(2/3)), at least 0, with u the width of the bracket
    of beta* (a float, or one width per image); float64 so that the count is exact at the thesis' 29."""
    width = torch.as_tensor(upper_bound).double()
    return (torch.log(precision / width) / math.log(2.0 / 3.0)).ceil_().clamp_min_(0)


class LinfBoxProx:
    """Algorithm 5.1 for a fixed batch of images, with its buffers allocated once.

    An attack calls the prox once per iteration on tensors of the same shape; fresh
    tensors of that size cost page faults on every call on a CPU (the allocator hands
    large blocks back to the system), more than the arithmetic of a ternary step. The
    box bounds -x and 1 - x are also computed once. ``norm`` holds ||p*||_inf per image
    (the dtype of the input) after each call: min(beta*, ||P_Lambda(delta)||_inf), exactly
    the largest |p*_i|, so callers need no extra pass over p*.
    """

    def __init__(self, images: torch.Tensor, precision: float = DEFAULT_PRECISION):
        self.batch = images.shape[0]
        self.shape = images.shape
        self.precision = precision
        self.box_lower = -images.detach().reshape(self.batch, -1)
        self.box_upper = 1 + self.box_lower
        flat_shape = self.box_lower.shape
        empty = lambda *shape: torch.empty(shape, dtype=images.dtype, device=images.device)
        self.projected = empty(*flat_shape)
        self.abs_projected = empty(*flat_shape)
        self.twice_abs_delta = empty(*flat_shape)
        self.clipped = empty(2, *flat_shape)
        self.change = empty(*flat_shape)
        self.norm = None

    def __call__(self, delta: torch.Tensor, lam: float | torch.Tensor, metric: torch.Tensor | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        """p* for delta (B, ...) of the images' shape; lam float or (B,); ``out`` receives p* if given."""
        batch = self.batch
        flat = delta.reshape(batch, -1)
        projected, abs_projected, twice_abs_delta = self.projected, self.abs_projected, self.twice_abs_delta
        torch.clamp(flat, min=self.box_lower, max=self.box_upper, out=projected)  # P_Lambda(delta), line 1
        torch.abs(projected, out=abs_projected)
        torch.abs(flat, out=twice_abs_delta).mul_(2)
        weights = None if metric is None else metric.reshape(batch, -1)
        twice_lam = 2 * torch.as_tensor(lam, dtype=flat.dtype, device=flat.device).expand(batch)

        upper = abs_projected.amax(1)  # line 3
        largest = upper
        clipped, change = self.clipped, self.change
        near, far = clipped.unbind(0)

        def excess(near_values: torch.Tensor, far_values: torch.Tensor, beta_near: torch.Tensor,
                   beta_far: torch.Tensor) -> torch.Tensor:
            """2 (f(beta_near) - f(beta_far)) from |p_beta| = min(|a|, beta); overwrites near_values."""
            torch.sub(near_values, far_values, out=change)  # zero wherever |a_i| <= min(beta): no cancellation
            change.mul_(near_values.add_(far_values).sub_(twice_abs_delta))
            if weights is not None:
                change.mul_(weights)
            return change.sum(-1).addcmul_(beta_near - beta_far, twice_lam)

        # Initial bracket (lines 2-3 narrowed): the test of line 12 on the pairs (u - w, u), w in
        # BRACKET_WIDTHS x lambda. f(u - w) >= f(u) implies beta* >= u - w (f is increasing on
        # [beta*, u]: strictly, as lambda > 0 or no component lies above beta), so l starts at the
        # largest such u - w, else at 0 (line 2).
        lower = torch.zeros(batch, dtype=flat.dtype, device=flat.device)  # line 2
        bracketed = torch.zeros(batch, dtype=torch.bool, device=flat.device)
        for width in sorted(BRACKET_WIDTHS):  # narrowest first; stop once every image has a bracket
            candidate = (upper - width * (twice_lam / 2)).clamp_min_(0)
            holds = excess(torch.minimum(abs_projected, candidate.unsqueeze(1), out=near), abs_projected,
                           candidate, upper) >= 0
            lower = torch.where(holds & ~bracketed, candidate, lower)
            bracketed |= holds
            if bool(bracketed.all()):
                break
        # Line 4 per image, from the narrowed bracket: ceil(log(Delta beta / (u - l)) / log(2/3)) steps end it no
        # wider than Delta beta. The loop runs the batch's largest count and an image stops moving after its own,
        # so its result does not depend on the batch.
        steps = ternary_search_steps(self.precision, upper - lower)
        for step in range(int(steps.max())):  # a device sync, as the early stop above
            third = (upper - lower) / 3
            trial = torch.stack((lower + third, upper - third))  # lines 6-7, (2, B)
            torch.minimum(abs_projected, trial.unsqueeze(-1), out=clipped)  # |p_beta_l|, |p_beta_u|: lines 8-9
            move_lower = excess(near, far, trial[0], trial[1]) >= 0  # lines 10-12
            running = steps > step
            lower = torch.where(move_lower & running, trial[0], lower)
            upper = torch.where(~move_lower & running, trial[1], upper)
        beta = ((lower + upper) / 2).unsqueeze(1)  # line 17
        self.norm = torch.minimum(beta.squeeze(1), largest)
        result = torch.clamp(projected, min=-beta, max=beta, out=None if out is None else out.view(batch, -1))
        return result.view(delta.shape)  # line 18


def prox_linf_box(delta: torch.Tensor, images: torch.Tensor, lam: float | torch.Tensor,
                  metric: torch.Tensor | None = None, precision: float = DEFAULT_PRECISION) -> torch.Tensor:
    """Batched Algorithm 5.1 (in the diagonal metric ``metric`` if given), one problem per image.

    delta, images, metric: (B, ...) of equal shape, images in [0, 1]; lam: float or (B,).
    Returns p* with x + p* in [0, 1] and ||p*||_inf <= ||P_Lambda(delta)||_inf.
    """
    return LinfBoxProx(images, precision)(delta, lam, metric=metric)
