"""Training losses of the calibration experiments (thesis Chapter 6, Table 6.2, Appendix V.6).

Every loss is a `TrainLoss`: ``loss(logits, labels) -> scalar`` with logits
(B, K, *spatial) and labels (B, *spatial). Per-pixel losses are averaged over the
labelled pixels of the batch (``IGNORE_INDEX`` pixels never count, in the
cross-entropy nor in any penalty), i.e. Algorithm 6.2 line 5 with pixels as
samples. Losses are computed in float32 whatever the logits' dtype.

Per labelled pixel, with ``s = softmax(z)``, ``y`` the label, ``d_k = max_j z_j - z_k``:

====================  ============================================================  ==============
name                  per-pixel loss                                                default
====================  ============================================================  ==============
``ce``                ``-log s_y`` (6.1)                                             --
``ls``                ``-(1 - a) log s_y - (a / K) sum_k log s_k``                   a = 0.05
``fl``                ``-(1 - s_y)^g log s_y``                                       g = 3
``ecp``               ``-log s_y - b (1/K) H(s)``, ``H(s) = -sum_k s_k log s_k``     b = 0.1
``mbls``              ``-log s_y + l (1/K) sum_k max(0, d_k - m)`` (6.3)             l = 0.1, m = 10
``cals_alm``          ``-log s_y + (1/K) sum_k PHR(d_k/m - 1, rho_k, lambda_k)``     Table V-4
``cals_hr``           ``-log s_y + (1/K) sum_k lambda_k max(0, d_k - m)``            rule (6.15)
====================  ============================================================  ==============

Choice (ECP, MbLS): the penalties are averaged over the K classes, as in the public
implementations (Liu et al. 2022a) whose weights 0.1 the thesis reuses (Appendix
V.6), and as CALS itself averages its constraints (6.11). Eq. (6.3) writes a sum
over classes; with a sum, the same loss has weight ``0.1 / K``.

The CALS losses are stateful (`robust_seg.training.cals`); all losses expose the
same hooks, no-ops for the stateless ones, so the training loop treats them alike:

- ``accumulate_validation(logits, labels)``: each batch of the held-out validation
  split, model in eval mode;
- ``update_multipliers(epoch)``: once per epoch (0-based) after the validation pass;
- ``state_dict()`` / ``load_state_dict(state)``: plain tensors and Python values;
- ``multipliers_history``: one (K,) tensor per update (Figure V-1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from robust_seg import IGNORE_INDEX
from robust_seg.training.cals import ALMMultipliers, ClassMultipliers, HeuristicMultipliers, logit_distances


def labelled_mean(values: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Mean of per-pixel ``values`` over the ``labelled`` pixels (0 when there is none)."""
    return torch.where(labelled, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum() / labelled.sum().clamp_min(1)


def _true_class_log_probability(log_probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return log_probabilities.gather(1, targets.unsqueeze(1)).squeeze(1)


class TrainLoss:
    """Base class: labelled-pixel mean of `pixel_losses`, and no-op multiplier hooks."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labelled = labels != IGNORE_INDEX
        targets = torch.where(labelled, labels, torch.zeros_like(labels)).long()
        return labelled_mean(self.pixel_losses(logits.float(), targets), labelled)

    def pixel_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-pixel loss (B, *spatial); values at unlabelled pixels are discarded."""
        raise NotImplementedError

    def accumulate_validation(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Accumulate the statistics of one validation batch for `update_multipliers`."""

    def update_multipliers(self, epoch: int) -> None:
        """Outer update after the validation pass of 0-based ``epoch``."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""

    @property
    def multipliers_history(self) -> list[torch.Tensor]:
        return []


class CrossEntropy(TrainLoss):
    """Cross-entropy (6.1)."""

    def pixel_losses(self, logits, targets):
        return -_true_class_log_probability(F.log_softmax(logits, dim=1), targets)


class LabelSmoothing(TrainLoss):
    """Cross-entropy to the smoothed target ``(1 - a) onehot(y) + a / K`` (Szegedy et al. 2016)."""

    def __init__(self, smoothing: float = 0.05):
        self.smoothing = float(smoothing)

    def pixel_losses(self, logits, targets):
        log_probabilities = F.log_softmax(logits, dim=1)
        true_class = _true_class_log_probability(log_probabilities, targets)
        return -(1 - self.smoothing) * true_class - self.smoothing * log_probabilities.mean(dim=1)


class FocalLoss(TrainLoss):
    """Focal loss ``-(1 - s_y)^gamma log s_y`` (Lin et al. 2017; Mukhoti et al. 2020)."""

    def __init__(self, gamma: float = 3.0):
        self.gamma = float(gamma)

    def pixel_losses(self, logits, targets):
        true_class = _true_class_log_probability(F.log_softmax(logits, dim=1), targets)
        return -((-torch.expm1(true_class)) ** self.gamma) * true_class


class ConfidencePenalty(TrainLoss):
    """Explicit confidence penalty ``CE - b (1/K) H(s)`` (Pereyra et al. 2017; class average: module doc)."""

    def __init__(self, weight: float = 0.1):
        self.weight = float(weight)

    def pixel_losses(self, logits, targets):
        log_probabilities = F.log_softmax(logits, dim=1)
        class_averaged_entropy = -(log_probabilities.exp() * log_probabilities).mean(dim=1)
        return -_true_class_log_probability(log_probabilities, targets) - self.weight * class_averaged_entropy


class MarginLabelSmoothing(TrainLoss):
    """MbLS (6.3): ``CE + l (1/K) sum_k max(0, d_k - m)`` (class average: module doc)."""

    def __init__(self, margin: float = 10.0, weight: float = 0.1):
        self.margin = float(margin)
        self.weight = float(weight)

    def pixel_losses(self, logits, targets):
        cross_entropy = -_true_class_log_probability(F.log_softmax(logits, dim=1), targets)
        return cross_entropy + self.weight * torch.relu(logit_distances(logits) - self.margin).mean(dim=1)


class ClassAdaptiveLabelSmoothing(TrainLoss):
    """CALS (6.11): cross-entropy plus the class-wise margin penalty of a `ClassMultipliers` rule.

    The rule is `ALMMultipliers` (CALS-ALM, Algorithm 6.2) or `HeuristicMultipliers`
    (CALS-HR, 6.15); its state is updated from the validation split by the hooks.
    """

    def __init__(self, multipliers: ClassMultipliers):
        self.multipliers = multipliers

    def pixel_losses(self, logits, targets):
        cross_entropy = -_true_class_log_probability(F.log_softmax(logits, dim=1), targets)
        return cross_entropy + self.multipliers.penalty(logit_distances(logits))

    @torch.no_grad()
    def accumulate_validation(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.multipliers.accumulate(logit_distances(logits.float()), labels != IGNORE_INDEX)

    def update_multipliers(self, epoch: int) -> None:
        self.multipliers.update(epoch)

    def state_dict(self) -> dict:
        return self.multipliers.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.multipliers.load_state_dict(state)

    @property
    def multipliers_history(self) -> list[torch.Tensor]:
        return self.multipliers.multipliers_history


def build_train_loss(name: str, num_classes: int, **hyperparameters) -> TrainLoss:
    """The loss ``name`` of Table 6.2 with the thesis' defaults, overridable by keyword.

    ``ce``; ``ls`` (smoothing); ``fl`` (gamma); ``ecp`` (weight); ``mbls`` (margin,
    weight); ``cals_alm`` (keywords of `ALMMultipliers`: margin, initial_multiplier,
    initial_penalty, penalty_growth, improvement_factor, penalty_update_period,
    multiplier_bounds); ``cals_hr`` (keywords of `HeuristicMultipliers`: margin,
    initial_multiplier, scale, tolerance, multiplier_bounds).
    """
    builders = {
        "ce": CrossEntropy,
        "ls": LabelSmoothing,
        "fl": FocalLoss,
        "ecp": ConfidencePenalty,
        "mbls": MarginLabelSmoothing,
        "cals_alm": lambda **kw: ClassAdaptiveLabelSmoothing(ALMMultipliers(num_classes, **kw)),
        "cals_hr": lambda **kw: ClassAdaptiveLabelSmoothing(HeuristicMultipliers(num_classes, **kw)),
    }
    if name not in builders:
        raise ValueError(f"unknown training loss {name!r}; choose one of {sorted(builders)}")
    return builders[name](**hyperparameters)
