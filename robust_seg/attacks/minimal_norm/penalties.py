"""The modified P2 penalty-Lagrangian function of ALMA prox (thesis eq. 5.9) and its analytic derivative.

P(y, rho, mu) = mu y + mu rho y^2 + rho^2 y^3 / 6            if y >= 0
              = mu y / (1 - max(1, rho) y)                  otherwise

P'(y, rho, mu) = mu + 2 mu rho y + rho^2 y^2 / 2             if y >= 0
               = mu / (1 - max(1, rho) y)^2                 otherwise

so P'(0) = mu (Axiom 2 of Sec. 4.3.1). The public implementation's backward for
y >= 0 returns mu*y + ... (derivative 0 at y = 0); this module follows the paper. ALMA prox needs only P',
computed by :class:`P2Derivative`; tests/test_alma_prox.py checks it against eq. 5.9 differentiated by autograd.
"""
from __future__ import annotations

import torch


class P2Derivative:
    """P'(y, rho, mu) of eq. 5.9 for a fixed y and rho and several mu, into reused buffers (ALMA prox).

    P' of eq. 5.9 in branch-free form, affine in mu:
        P' = mu A + C,  A = (1 + 2 rho y+) / (1 - max(1, rho) y-)^2,  C = (rho y+)^2 / 2,
        y+ = max(y, 0), y- = min(y, 0)
    (y >= 0: the denominator is 1; y < 0: the numerator is 1 and C = 0), so no branch is
    evaluated and discarded, no per-call tensor is allocated, and ALMA prox's two evaluations
    per iteration (the multiplier update and the loss gradient, Alg. IV-2 l. 12 and 21), which
    share y and, except at the steps where rho grows, rho, cost one pass each once A and C are set.
    """

    def __init__(self, like: torch.Tensor):
        self.positive, self.negative, self.slope, self.offset, self.denominator = (
            torch.empty_like(like) for _ in range(5))

    def set_y(self, y: torch.Tensor) -> None:
        torch.clamp(y, min=0, out=self.positive)
        torch.clamp(y, max=0, out=self.negative)

    def set_rho(self, rho: torch.Tensor, rho_at_least_one: torch.Tensor) -> None:
        """A and C at the last ``set_y`` (call after every ``set_y``); ``rho_at_least_one`` = max(1, rho)."""
        rho_y = torch.mul(rho, self.positive, out=self.offset)
        numerator = torch.add(rho_y, rho_y, out=self.slope).add_(1)
        denominator = torch.mul(rho_at_least_one, self.negative, out=self.denominator).neg_().add_(1).square_()
        numerator.div_(denominator)
        rho_y.square_().mul_(0.5)

    def __call__(self, mu: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """P' = mu A + C into ``out``."""
        return torch.addcmul(self.offset, mu, self.slope, out=out)
