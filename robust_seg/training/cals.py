"""Class-wise penalty multipliers of CALS (thesis Chapter 6, Appendix V).

CALS replaces the single balancing weight of MbLS (eq. 6.3) by one multiplier per
class (eq. 6.5) for the margin constraints on the logit distances
``d_k = max_j z_j - z_k`` (eq. 6.2), and learns the multipliers on a held-out
validation split once per epoch.

Two update rules share one interface (`ClassMultipliers`):

- `ALMMultipliers` (CALS-ALM, Algorithm 6.2): PHR penalty (6.13) on the normalised
  constraints ``h_k = d_k / m - 1`` (6.10), averaged over classes (6.11); multipliers
  re-estimated by (6.12) as the validation mean of the penalty derivative; penalty
  parameters rho multiplied by gamma when the mean constraint does not improve (Alg. 6.2), or by the public
  code's scalar rule on the validation penalty (``rho_rule=official``).
- `HeuristicMultipliers` (CALS-HR, rule 6.15): class-wise MbLS penalty whose weights
  are scaled up or down by mu when the class penalty on validation grows or shrinks
  by more than a factor tau.

Both operate on logit distances laid out as (B, K, *spatial) with a boolean mask of
labelled pixels (B, *spatial): unlabelled pixels never enter a penalty nor a
statistic (the public CALS implementation forgets this mask; we apply it).

Statistics are accumulated as sums and pixel counts; under ``torch.distributed`` the
sums are all-reduced before each update, so every rank ends with the multipliers of
the single-process computation on the union of the validation shards.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def logit_distances(logits: torch.Tensor) -> torch.Tensor:
    """``d_k = max_j z_j - z_k >= 0`` along the class dimension 1 (eq. 6.2, 6.9)."""
    return logits.amax(dim=1, keepdim=True) - logits


def phr_penalty(z: torch.Tensor, rho: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
    """PHR penalty-Lagrangian function (eq. 6.13 / A V-1).

    ``lambda z + rho z^2 / 2`` where ``lambda + rho z >= 0``, else ``-lambda^2 / (2 rho)``;
    written as ``(max(0, lambda + rho z)^2 - lambda^2) / (2 rho)``, which is the same
    function and differentiates to `phr_derivative` under autograd.
    """
    return (torch.clamp(multiplier + rho * z, min=0) ** 2 - multiplier**2) / (2 * rho)


def phr_derivative(z: torch.Tensor, rho: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
    """``d PHR / dz = max(0, lambda + rho z)``; equals lambda at z = 0 (Appendix V axiom 2)."""
    return torch.clamp(multiplier + rho * z, min=0)


def _per_class(values: torch.Tensor, num_dims: int) -> torch.Tensor:
    """View a (K,) vector so that it broadcasts against a (B, K, *spatial) tensor."""
    return values.view((1, -1) + (1,) * (num_dims - 2))


def _sum_over_labelled(values: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Per-class sums (K,) of (B, K, *spatial) values over labelled pixels, in float64."""
    masked = torch.where(labelled.unsqueeze(1), values, torch.zeros((), dtype=values.dtype, device=values.device))
    return masked.double().sum(dim=[0, *range(2, masked.dim())])


class ClassMultipliers:
    """Class-wise multipliers lambda (K,) learnt on validation data; base of both CALS rules.

    Subclasses define `penalty` (per pixel, averaged over classes), the validation
    statistics they accumulate (`_statistics_of`) and the rule applied to their
    validation means (`_apply_update`).
    """

    num_statistics: int

    def __init__(self, num_classes: int, margin: float, initial_multiplier: float, multiplier_bounds: tuple[float, float]):
        self.num_classes = num_classes
        self.margin = float(margin)
        self.multiplier_bounds = (float(multiplier_bounds[0]), float(multiplier_bounds[1]))
        self.multipliers = torch.full((num_classes,), float(initial_multiplier), dtype=torch.float64)
        self.multipliers_history: list[torch.Tensor] = []
        """Multipliers after each `update`, one (K,) CPU tensor per epoch (Figure V-1)."""
        self._reset_statistics(self.multipliers.device)

    # -- to be defined by the rules ---------------------------------------------------
    def penalty(self, distances: torch.Tensor) -> torch.Tensor:
        """Per-pixel penalty (B, *spatial), averaged over the K classes."""
        raise NotImplementedError

    def _statistics_of(self, distances: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """(num_statistics, K) sums over the labelled pixels of one validation batch."""
        raise NotImplementedError

    def _apply_update(self, means: torch.Tensor, epoch: int) -> None:
        """Update the state from the (num_statistics, K) validation means."""
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------
    def _reset_statistics(self, device: torch.device) -> None:
        self._sums = torch.zeros(self.num_statistics, self.num_classes, dtype=torch.float64, device=device)
        self._count = torch.zeros((), dtype=torch.float64, device=device)

    def _tensors(self) -> dict[str, torch.Tensor | None]:
        """The (K,) state tensors (None while unset) that follow the device of the logits."""
        return {"multipliers": self.multipliers}

    def to(self, device: torch.device) -> "ClassMultipliers":
        """Move the state to ``device`` (done lazily on first use with logits there)."""
        for name, value in self._tensors().items():
            setattr(self, name, None if value is None else value.to(device))
        self._sums = self._sums.to(device)
        self._count = self._count.to(device)
        return self

    def _follow(self, tensor: torch.Tensor) -> None:
        if self.multipliers.device != tensor.device:
            self.to(tensor.device)

    @torch.no_grad()
    def accumulate(self, distances: torch.Tensor, labelled: torch.Tensor) -> None:
        """Add the statistics of one validation batch (no grad, no host sync)."""
        self._follow(distances)
        self._sums += self._statistics_of(distances.detach(), labelled)
        self._count += labelled.sum()

    def all_reduce(self) -> None:
        """Sum the accumulated statistics over ranks when ``torch.distributed`` is initialised."""
        if dist.is_available() and dist.is_initialized():
            packed = torch.cat([self._sums.flatten(), self._count.view(1)])
            dist.all_reduce(packed, op=dist.ReduceOp.SUM)
            self._sums = packed[:-1].view_as(self._sums)
            self._count = packed[-1]

    @torch.no_grad()
    def update(self, epoch: int) -> None:
        """Outer ALM step after the validation pass of 0-based ``epoch``; resets the statistics."""
        self.all_reduce()
        count = float(self._count)
        if count == 0:
            raise RuntimeError("update of the CALS multipliers without any labelled validation pixel accumulated")
        self._apply_update(self._sums / count, epoch)
        self.multipliers_history.append(self.multipliers.detach().cpu().clone())
        self._reset_statistics(self.multipliers.device)

    def state_dict(self) -> dict:
        """Plain tensors (CPU) and Python values, for checkpoints."""
        state = {name: None if value is None else value.detach().cpu().clone() for name, value in self._tensors().items()}
        state["multipliers_history"] = (
            torch.stack(self.multipliers_history) if self.multipliers_history else torch.zeros(0, self.num_classes, dtype=torch.float64)
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        device = self.multipliers.device
        for name in self._tensors():
            value = state[name]
            setattr(self, name, None if value is None else value.to(device=device, dtype=torch.float64).clone())
        self.multipliers_history = [row.clone() for row in state["multipliers_history"].to(torch.float64)]
        self._reset_statistics(device)


RHO_RULES = ("thesis", "official")
"""How CALS-ALM updates its penalty parameters rho (see `ALMMultipliers`)."""


class ALMMultipliers(ClassMultipliers):
    """CALS-ALM (Algorithm 6.2) with the PHR penalty and the hyperparameters of Table V-4.

    Loss term per labelled pixel (eq. 6.11): ``(1/K) sum_k PHR(d_k/m - 1, rho_k, lambda_k)``.

    After each epoch, from the labelled pixels of the validation split:

    - (6.12) ``lambda_k <- mean_pixels clamp(PHR'(d_k/m - 1, rho_k, lambda_k), lmin, lmax)``,
      then projected on ``[lmin, lmax] = [1e-6, 1e6]``. The derivative is clamped per
      pixel before averaging, as in the public implementation ("mean of clamped
      gradients"); the difference to clamping the mean only is at most lmin.
    - the penalty parameters rho, by ``rho_rule``:

      ``thesis`` (default; Algorithm 6.2 lines 10-14, exactly): one rho_k per class, updated after *every*
      epoch j >= 1: ``rho_k <- gamma rho_k`` where the mean constraint ``dbar_k^(j) = mean_pixels (d_k/m - 1)``
      exceeds ``tau max{0, dbar_k^(j-1)}`` (the previous epoch's value), else unchanged. The thesis' text
      also says rho is updated "every 10 epochs" (Sec. 6.5.1); the algorithm, which this rule follows, checks
      every epoch, so ``penalty_update_period`` is not used by it.

      ``official`` (the public code, ``by-liu/CALS``, ``AugLagrangianClass.update_rho_by_val``): ONE scalar
      rho for all classes, starting at ``initial_penalty``; the validation penalty ``P^(j) = mean_pixels sum_k
      PHR(d_k/m - 1, rho, lambda_k)`` is recorded after every epoch, and at epochs with
      ``(j + 1) % penalty_update_period == 0``: ``rho <- min(rho_max, gamma rho)`` when the previous epoch's
      ``P^(j-1)`` and ``P^(j)`` are both positive and ``P^(j) > tau P^(j-1)``; ``penalty_bounds`` =
      ``[rho_min, rho_max] = [1, 10]`` as there.

    Both rules compute the new lambda with the rho in force during the epoch (Alg. 6.2 order), so a rho change
    takes effect from the next epoch on. Mean over pixels: every labelled pixel of the validation split counts
    once (dataset-level mean, not a mean of per-image means).
    """

    num_statistics = 3  # (clamped penalty derivative, normalised constraint, penalty) per class

    def __init__(
        self,
        num_classes: int,
        *,
        margin: float = 10.0,
        initial_multiplier: float = 1e-6,
        initial_penalty: float = 1.0,
        penalty_growth: float = 1.2,
        improvement_factor: float = 0.9,
        penalty_update_period: int = 10,
        multiplier_bounds: tuple[float, float] = (1e-6, 1e6),
        rho_rule: str = "thesis",
        penalty_bounds: tuple[float, float] = (1.0, 10.0),
    ):
        if rho_rule not in RHO_RULES:
            raise ValueError(f"unknown rho_rule {rho_rule!r}; choose one of {list(RHO_RULES)}")
        self.rho_rule = rho_rule
        self.penalty_parameters = torch.full((num_classes,), float(initial_penalty), dtype=torch.float64)
        self.reference_constraints: torch.Tensor | None = None
        """thesis rule: the previous epoch's mean constraint per class (None before the first update)."""
        self.previous_penalty: torch.Tensor | None = None
        """official rule: the previous epoch's validation penalty (a 0-dim tensor; None before the first)."""
        self.penalty_growth = float(penalty_growth)
        self.improvement_factor = float(improvement_factor)
        self.penalty_update_period = int(penalty_update_period)
        self.penalty_bounds = (float(penalty_bounds[0]), float(penalty_bounds[1]))
        super().__init__(num_classes, margin, initial_multiplier, multiplier_bounds)

    def _tensors(self) -> dict[str, torch.Tensor | None]:
        return {
            "multipliers": self.multipliers,
            "penalty_parameters": self.penalty_parameters,
            "reference_constraints": self.reference_constraints,
            "previous_penalty": self.previous_penalty,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict({"previous_penalty": None, **state})

    def constraints(self, distances: torch.Tensor) -> torch.Tensor:
        """Normalised constraints ``h_k = d_k / m - 1`` (eq. 6.10), satisfied when <= 0."""
        return distances / self.margin - 1

    def _penalty_arguments(self, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rho = _per_class(self.penalty_parameters.to(distances.dtype), distances.dim())
        multiplier = _per_class(self.multipliers.to(distances.dtype), distances.dim())
        return rho, multiplier

    def penalty(self, distances: torch.Tensor) -> torch.Tensor:
        self._follow(distances)
        rho, multiplier = self._penalty_arguments(distances)
        return phr_penalty(self.constraints(distances), rho, multiplier).mean(dim=1)

    def _statistics_of(self, distances: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        rho, multiplier = self._penalty_arguments(distances)
        constraints = self.constraints(distances)
        derivative = phr_derivative(constraints, rho, multiplier).clamp(*self.multiplier_bounds)
        return torch.stack([_sum_over_labelled(derivative, labelled), _sum_over_labelled(constraints, labelled),
                            _sum_over_labelled(phr_penalty(constraints, rho, multiplier), labelled)])

    def _apply_update(self, means: torch.Tensor, epoch: int) -> None:
        mean_derivative, mean_constraint, mean_penalty = means
        self.multipliers = mean_derivative.clamp(*self.multiplier_bounds)
        if self.rho_rule == "thesis":
            if self.reference_constraints is not None:  # j >= 1
                not_improved = mean_constraint > self.improvement_factor * self.reference_constraints.clamp_min(0)
                self.penalty_parameters = torch.where(
                    not_improved, self.penalty_growth * self.penalty_parameters, self.penalty_parameters)
            self.reference_constraints = mean_constraint.clone()
            return
        penalty = mean_penalty.sum()  # sum over classes, mean over pixels, as the public code's val penalty
        previous = self.previous_penalty
        if (epoch + 1) % self.penalty_update_period == 0 and previous is not None and previous > 0 and penalty > 0 \
                and penalty > self.improvement_factor * previous:
            self.penalty_parameters = (self.penalty_growth * self.penalty_parameters).clamp(max=self.penalty_bounds[1])
        self.previous_penalty = penalty.clone()


class HeuristicMultipliers(ClassMultipliers):
    """CALS-HR: heuristic multiplier rule (6.15) with mu = tau = 1.1.

    Loss term per labelled pixel: ``(1/K) sum_k lambda_k max(0, d_k - m)``, i.e. the
    MbLS penalty (6.3, with the class average of `MarginLabelSmoothingLoss`) with one
    weight per class (6.5). Choices (the thesis does not define P_k nor lambda^(0)
    for HR; taken from the public implementation): ``lambda^(0) = 0.1`` (the MbLS
    weight, so that epoch 0 trains exactly MbLS; with lambda^(0) = 1e-6 and factors
    of 1.1 per epoch the penalty would stay negligible for the whole training), and
    ``P_k^(j)`` is the validation mean over labelled pixels of
    ``lambda_k^(j) max(0, d_k - m)``. After each epoch j (from the second on):
    ``lambda_k <- mu lambda_k`` if ``P_k^(j+1) > tau P_k^(j)``, ``lambda_k / mu`` if
    ``P_k^(j) > tau P_k^(j+1)``, unchanged otherwise; projected on [1e-6, 1e6].
    """

    num_statistics = 1  # class penalty

    def __init__(
        self,
        num_classes: int,
        *,
        margin: float = 10.0,
        initial_multiplier: float = 0.1,
        scale: float = 1.1,
        tolerance: float = 1.1,
        multiplier_bounds: tuple[float, float] = (1e-6, 1e6),
    ):
        self.previous_penalties: torch.Tensor | None = None
        self.scale = float(scale)
        self.tolerance = float(tolerance)
        super().__init__(num_classes, margin, initial_multiplier, multiplier_bounds)

    def _tensors(self) -> dict[str, torch.Tensor | None]:
        return {"multipliers": self.multipliers, "previous_penalties": self.previous_penalties}

    def _class_penalties(self, distances: torch.Tensor) -> torch.Tensor:
        multiplier = _per_class(self.multipliers.to(distances.dtype), distances.dim())
        return multiplier * torch.relu(distances - self.margin)

    def penalty(self, distances: torch.Tensor) -> torch.Tensor:
        self._follow(distances)
        return self._class_penalties(distances).mean(dim=1)

    def _statistics_of(self, distances: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        return _sum_over_labelled(self._class_penalties(distances), labelled).unsqueeze(0)

    def _apply_update(self, means: torch.Tensor, epoch: int) -> None:
        penalties = means[0]
        if self.previous_penalties is not None:
            previous = self.previous_penalties
            scaled = torch.where(penalties > self.tolerance * previous, self.multipliers * self.scale, self.multipliers)
            scaled = torch.where(previous > self.tolerance * penalties, self.multipliers / self.scale, scaled)
            self.multipliers = scaled.clamp(*self.multiplier_bounds)
        self.previous_penalties = penalties.clone()
