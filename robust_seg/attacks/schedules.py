"""Iteration schedules: radius schedules of the SEA paper (Sec. 2.3) and APGD checkpoints.

Radius schedules split a run's iteration budget into stages (radius, iterations):

- ``const`` (const-eps): one stage at eps.
- ``red`` (red-eps, progressive radius reduction): three stages at 2 eps, 1.5 eps, eps with
  budget ratio 3 : 3 : 4 (floor(0.3 N), floor(0.3 N), the rest; 90/90/120 for N = 300).
  Stages that receive no iteration (N < 4) are dropped.
"""
from __future__ import annotations

import math

RED_EPS_FACTORS = (2.0, 1.5, 1.0)
RED_EPS_TENTHS = (3, 3)
"""Budget shares of the first two red-eps stages in tenths (integer arithmetic: exact floors)."""
SCHEDULES = ("const", "red")


def radius_schedule(eps: float, iterations: int, schedule: str) -> list[tuple[float, int]]:
    """Stages (radius, iterations) of one run; the last stage is always at ``eps``."""
    if schedule == "const":
        return [(eps, iterations)]
    if schedule == "red":
        budgets = [tenths * iterations // 10 for tenths in RED_EPS_TENTHS]
        budgets.append(iterations - sum(budgets))
        return [(factor * eps, budget) for factor, budget in zip(RED_EPS_FACTORS, budgets) if budget > 0]
    raise ValueError(f"unknown radius schedule {schedule!r}; choose from {SCHEDULES}")


def split_budget(iterations: int, runs: int) -> list[int]:
    """Split ``iterations`` over ``runs`` restarts as evenly as possible (earlier runs get the remainder)."""
    if runs < 1:
        raise ValueError("restarts must be >= 1")
    return [iterations // runs + (index < iterations % runs) for index in range(runs)]


def apgd_checkpoints(iterations: int) -> list[int]:
    """APGD checkpoints w_j = ceil(p_j N) (Croce & Hein 2020, Linf), excluding 0 and N.

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).
    """
    previous, current = 0.0, 0.22
    checkpoints = []
    while current < 1.0:
        position = math.ceil(current * iterations - 1e-9)
        if 0 < position < iterations and (not checkpoints or position > checkpoints[-1]):
            checkpoints.append(position)
        previous, current = current, current + max(current - previous - 0.03, 0.06)
    return checkpoints
