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
12's own test on the pairs (u - w, u) for up to four widths w (``BRACKET_WIDTHS`` x
lambda, narrowest first, until every image has one), which is exact by convexity and
cuts the 29 steps of an ALMA prox call to 0-15. Both trial points are evaluated
together, on the blocks of components that can lie above the lower one (``_Blocks``),
and the image-sized buffers are allocated once per attack (``LinfBoxProx``).
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

BRACKET_WIDTHS = (1 / 32, 1 / 4, 1.0, 4.0)
"""Widths (x lambda) below ||P_Lambda(delta)||_inf tried as lower bounds of beta* before the search.

In ALMA prox's forward-backward iteration a step moves every component by at most a
few lambda, and beta* lies within lambda / 32 or lambda / 4 (failed attack, norm growing)
or lambda or 4 lambda (successful attack, norm shrinking; early iterations, when many
components lie near the largest) of the largest component in nearly every call; at
lambda = 1e-3 the ternary search then needs 3, 8, 12 or 15 steps instead of 29 (at 1e-4:
0, 3, 7 or 9). Each width costs about one ternary step; wider ones are only tried while
some image has none. (On the shipped model's ALMA prox iterates, the width lambda saves
~10% of the search's evaluations and half of the components they visit.)"""


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

    Lines 8-12 only see the components above the lower trial point (the others contribute
    exactly zero, see ``_Blocks``), and in ALMA prox's iteration these are typically a few of
    the largest components. Each image's components are grouped in blocks of ``BLOCK``
    consecutive ones (or the largest power of two dividing the image size), and every test
    runs on the blocks whose largest |a_i| lies above the bracket's lower end, selected anew
    as the bracket narrows.
    """

    BLOCK = 64
    RESELECT = 64
    """Blocks above which the selection is narrowed again at every step (below, a step costs its dispatch)."""

    def __init__(self, images: torch.Tensor, precision: float = DEFAULT_PRECISION):
        self.batch = images.shape[0]
        self.shape = images.shape
        self.precision = precision
        self.box_lower = -images.detach().reshape(self.batch, -1)
        self.box_upper = 1 + self.box_lower
        size = self.box_lower.shape[1]
        self.block = math.gcd(size, self.BLOCK)
        self.blocks_per_image = size // self.block
        self.block_image = torch.arange(self.batch, device=images.device).repeat_interleave(self.blocks_per_image)
        self.projected = torch.empty_like(self.box_lower)
        self.abs_projected = torch.empty_like(self.box_lower)
        self.norm = None

    def __call__(self, delta: torch.Tensor, lam: float | torch.Tensor, metric: torch.Tensor | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        """p* for delta (B, ...) of the images' shape; lam float or (B,); ``out`` receives p* if given."""
        batch = self.batch
        flat = delta.reshape(batch, -1)
        projected, abs_projected = self.projected, self.abs_projected
        torch.clamp(flat, min=self.box_lower, max=self.box_upper, out=projected)  # P_Lambda(delta), line 1
        torch.abs(projected, out=abs_projected)
        lam = torch.as_tensor(lam, dtype=flat.dtype, device=flat.device).expand(batch)
        block_max = abs_projected.view(batch, self.blocks_per_image, self.block).amax(2)
        upper = block_max.amax(1)  # line 3
        largest = upper
        blocks = _Blocks(self, block_max, flat, metric, lam)

        # Initial bracket (lines 2-3 narrowed): the test of line 12 on the pairs (u - w, u), w in
        # BRACKET_WIDTHS x lambda. f(u - w) >= f(u) implies beta* >= u - w (f is increasing on
        # [beta*, u]: strictly, as lambda > 0 or no component lies above beta), so l starts at the
        # largest such u - w, else at 0 (line 2).
        lower = torch.zeros(batch, dtype=flat.dtype, device=flat.device)  # line 2
        bracketed = torch.zeros(batch, dtype=torch.bool, device=flat.device)
        for width in sorted(BRACKET_WIDTHS):  # narrowest first; stop once every image has a bracket
            candidate = (upper - width * lam).clamp_min_(0)
            holds = blocks.select(candidate).excess(candidate, upper, candidate - upper) >= 0
            lower = torch.where(holds & ~bracketed, candidate, lower)
            bracketed |= holds
            if bool(bracketed.all()):
                break
        # Line 4 per image, from the narrowed bracket: ceil(log(Delta beta / (u - l)) / log(2/3)) steps end it no
        # wider than Delta beta. The loop runs the batch's largest count and an image stops moving after its own,
        # so its result does not depend on the batch.
        steps = ternary_search_steps(self.precision, upper - lower)
        counts = steps.aminmax()  # a device sync, as the early stop above
        fewest, most = int(counts.min), int(counts.max)
        for step in range(most):
            third = (upper - lower).div_(3)
            trial_lower, trial_upper = lower + third, upper - third  # lines 6-7
            if step == 0 or blocks.selected > self.RESELECT:
                blocks.select(lower)
            move_lower = blocks.excess(trial_lower, trial_upper, third.neg_()) >= 0  # lines 8-9
            if step >= fewest:  # images past their own count keep their bracket
                running = steps > step
                trial_lower, trial_upper = torch.where(running, trial_lower, lower), torch.where(running, trial_upper, upper)
            lower = torch.where(move_lower, trial_lower, lower)  # lines 10-12: l <- trial_l if f(trial_l) >= f(trial_u)
            upper = torch.where(move_lower, upper, trial_upper)  # else u <- trial_u
        beta = ((lower + upper) / 2).unsqueeze(1)  # line 17, (B, 1)
        self.norm = torch.minimum(beta.squeeze(1), largest)
        result = torch.minimum(projected, beta, out=None if out is None else out.view(batch, -1))
        return torch.maximum(result, beta.neg(), out=result).view(delta.shape)  # line 18: clip to [-beta, beta]


class _Blocks:
    """Lines 8-12 of Algorithm 5.1 on the blocks of components that can lie above the lower trial point.

    2 (f(beta_l) - f(beta_u)) is computed directly as sum_i H_i (m_l - m_u)(m_l + m_u - 2|delta_i|)
    + 2 lambda (beta_l - beta_u), m = min(|a|, beta), since P_Lambda keeps each component's sign
    ((p_beta - delta)_i^2 = (m_i - |delta_i|)^2). Components with |a_i| <= beta_l contribute exactly
    zero, so the comparison keeps its precision in float32 on images with millions of components
    (evaluating f_l and f_u separately loses it to cancellation), and leaving out blocks whose
    components all lie at or below beta_l changes nothing.
    """

    def __init__(self, prox: LinfBoxProx, block_max: torch.Tensor, flat: torch.Tensor, metric: torch.Tensor | None,
                 lam: torch.Tensor):
        shape = (-1, prox.block)
        self.all_image = prox.block_image
        self.all_abs_projected = prox.abs_projected.view(shape)
        self.all_delta = flat.view(shape)
        self.all_weights = None if metric is None else metric.reshape(shape)
        self.block_max = block_max
        self.twice_lam = 2 * lam
        self.batch = prox.batch
        self.selected = None

    def select(self, floor: torch.Tensor) -> _Blocks:
        """Keep the blocks holding a component with |a_i| > floor (B,) of their image."""
        index = (self.block_max > floor.unsqueeze(1)).view(-1).nonzero().squeeze(1)
        self.selected = index.numel()
        pick = lambda values: values.index_select(0, index)
        self.image, self.abs_projected = pick(self.all_image), pick(self.all_abs_projected)
        self.twice_abs_delta = pick(self.all_delta).abs_().mul_(2)
        self.weights = None if self.all_weights is None else pick(self.all_weights)
        return self

    def excess(self, beta_near: torch.Tensor, beta_far: torch.Tensor, difference: torch.Tensor) -> torch.Tensor:
        """2 (f(beta_near) - f(beta_far)) per image (B,), beta_near at or above the selection's floor,
        ``difference`` = beta_near - beta_far."""
        betas = torch.stack((beta_near, beta_far), 1).index_select(0, self.image).unsqueeze(-1)  # (blocks, 2, 1)
        clipped = torch.minimum(self.abs_projected.unsqueeze(1), betas)
        near, far = clipped.unbind(1)
        change = near - far
        change.mul_(near.add_(far).sub_(self.twice_abs_delta))
        if self.weights is not None:
            change.mul_(self.weights)
        sums = torch.zeros(self.batch, dtype=change.dtype, device=change.device)
        return sums.index_add_(0, self.image, change.sum(1)).addcmul_(difference, self.twice_lam)


def prox_linf_box(delta: torch.Tensor, images: torch.Tensor, lam: float | torch.Tensor,
                  metric: torch.Tensor | None = None, precision: float = DEFAULT_PRECISION) -> torch.Tensor:
    """Batched Algorithm 5.1 (in the diagonal metric ``metric`` if given), one problem per image.

    delta, images, metric: (B, ...) of equal shape, images in [0, 1]; lam: float or (B,).
    Returns p* with x + p* in [0, 1] and ||p*||_inf <= ||P_Lambda(delta)||_inf.
    """
    return LinfBoxProx(images, precision)(delta, lam, metric=metric)
