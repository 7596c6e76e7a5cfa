"""The modified P2 penalty-Lagrangian function of ALMA prox (thesis eq. 5.9) and its analytic derivative.

P(y, rho, mu) = mu y + mu rho y^2 + rho^2 y^3 / 6            if y >= 0
              = mu y / (1 - max(1, rho) y)                  otherwise

P'(y, rho, mu) = mu + 2 mu rho y + rho^2 y^2 / 2             if y >= 0
               = mu / (1 - max(1, rho) y)^2                 otherwise

so P'(0) = mu (Axiom 2 of Sec. 4.3.1). The public implementation's backward for
y >= 0 returns mu*y + ... (derivative 0 at y = 0); this module follows the paper.
"""
from __future__ import annotations

import torch


def p2_penalty(y: torch.Tensor, rho: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Eq. 5.9, element-wise (differentiable by autograd on both branches)."""
    negative = y.clamp(max=0)
    below = mu * negative / (1 - rho.clamp(min=1) * negative)
    above = mu * y + mu * rho * y.square() + rho.square() * y.pow(3) / 6
    return torch.where(y >= 0, above, below)


def p2_penalty_derivative(y: torch.Tensor, rho: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """dP/dy of eq. 5.9, element-wise: used for the multiplier update (Alg. IV-2 l. 12) and the loss gradient."""
    negative = y.clamp(max=0)
    below = mu / (1 - rho.clamp(min=1) * negative).square()
    above = mu + 2 * mu * rho * y + 0.5 * rho.square() * y.square()
    return torch.where(y >= 0, above, below)
