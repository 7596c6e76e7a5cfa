"""Per-image bookkeeping shared by the minimal-norm attacks.

Every attack evaluates iterates x_tilde (one forward each) and returns, per
image, the smallest-norm evaluated iterate with APSR >= nu; when none reached
nu, the highest-APSR evaluated iterate and success = False (thesis Alg. IV-2
line 27 and Sec. 5.6).
"""
from __future__ import annotations

import torch

from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.pgd import copy_where, where_per_image
from robust_seg.attacks.progress import tick
from robust_seg.attacks.result import AttackResult
from robust_seg.metrics.apsr import attacked_pixels, linf_norms
from robust_seg.metrics.segmentation import pixel_accuracy

GRADIENT_FLOOR = 1e-12
"""Smallest gradient norm a minimal-norm attack divides by (a zero gradient gives a zero step)."""


class AttackProblem:
    """The labels an attack works on: constraint labels (true or target), attacked-pixel mask, counts."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, targeted: bool,
                 target_labels: torch.Tensor | None):
        if targeted and target_labels is None:
            raise ValueError("a targeted attack needs target_labels")
        self.images = images.detach()
        self.labels = labels
        self.targeted = targeted
        self.target_labels = target_labels if targeted else None
        self.constraint_labels = self.target_labels if targeted else labels
        self.valid = attacked_pixels(labels, self.target_labels)
        self.valid_counts = self.valid.flatten(1).sum(1).cpu()
        self._apsr_denominator = self.valid.flatten(1).sum(1).clamp_min(1).double()
        self._float_buffers = None

    def apsr(self, predictions: torch.Tensor) -> torch.Tensor:
        """``metrics.apsr.apsr`` (eq. 5.19) with the attacked-pixel mask and counts computed once.

        ``predictions`` may also hold the class indices as floating-point values (as ``DLRPlus``
        computes them): the comparison then runs in that dtype, several times faster on a CPU
        than on integers with a boolean result.
        """
        if not predictions.is_floating_point():
            hit = predictions == self.target_labels if self.targeted else predictions != self.labels
            return (hit & self.valid).flatten(1).sum(1).double() / self._apsr_denominator
        if self._float_buffers is None or self._float_buffers[0].dtype != predictions.dtype:
            labels = (self.target_labels if self.targeted else self.labels).to(predictions.dtype)
            self._float_buffers = (labels, self.valid.to(predictions.dtype), torch.empty_like(labels))
        labels, valid, hit = self._float_buffers
        (torch.eq if self.targeted else torch.ne)(predictions, labels, out=hit).mul_(valid)
        return hit.flatten(1).sum(1).double() / self._apsr_denominator


class BestIterate:
    """Smallest-norm iterate with APSR >= nu per image, else the highest-APSR one (vectorised, no syncs)."""

    def __init__(self, problem: AttackProblem, nu: float):
        images = problem.images
        batch = images.shape[0]
        self.problem = problem
        self.nu = nu
        self.adv = images.clone()
        self.predictions = torch.zeros(problem.labels.shape, dtype=torch.long, device=images.device)
        self.apsr = torch.full((batch,), float("-inf"), dtype=torch.float64, device=images.device)
        self.norm = torch.full((batch,), float("inf"), dtype=torch.float64, device=images.device)
        self.success = torch.zeros(batch, dtype=torch.bool, device=images.device)
        self.forwards = torch.zeros(batch, dtype=torch.long)
        self.backwards = torch.zeros(batch, dtype=torch.long)

    def update(self, adv: torch.Tensor, predictions: torch.Tensor, apsr_values: torch.Tensor,
               norm: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Offer evaluated iterates (for the images ``index``, default all); returns their is_adv (APSR >= nu)."""
        norm = norm.double()
        is_adv = apsr_values >= self.nu
        if index is None:
            success, best_norm, best_apsr = self.success, self.norm, self.apsr
        else:
            success, best_norm, best_apsr = self.success[index], self.norm[index], self.apsr[index]
        better = torch.where(success, is_adv & (norm <= best_norm), is_adv | (apsr_values > best_apsr))
        new_apsr = torch.where(better, apsr_values, best_apsr)
        new_norm = torch.where(better, norm, best_norm)
        new_success = success | is_adv
        if index is None:  # copies of the improved images only (a select over whole images is slow on a CPU)
            self.adv = copy_where(better, adv.detach(), self.adv)
            self.predictions = copy_where(better, predictions, self.predictions)
            self.apsr, self.norm, self.success = new_apsr, new_norm, new_success
        else:
            new_adv = where_per_image(better, adv.detach(), self.adv[index])
            new_pred = where_per_image(better, predictions, self.predictions[index])
            self.adv[index], self.predictions[index], self.apsr[index] = new_adv, new_pred, new_apsr
            self.norm[index], self.success[index] = new_norm, new_success
        return is_adv

    def count(self, forwards: int | torch.Tensor = 1, backwards: int | torch.Tensor = 1) -> None:
        """Add model propagations (per image, or for all images); one call per iteration of the attack."""
        tick()
        self.forwards += forwards if isinstance(forwards, int) else forwards.cpu().long()
        self.backwards += backwards if isinstance(backwards, int) else backwards.cpu().long()

    def result(self, **extras) -> AttackResult:
        """AttackResult with extras 'norm', 'apsr', 'success', 'forwards', 'backwards' (+ ``extras``)."""
        problem = self.problem
        norms = linf_norms(self.adv, problem.images)
        check_linf_box(self.adv, problem.images, norms)
        return AttackResult(
            adv_images=self.adv,
            predictions=self.predictions,
            accuracy=100 * pixel_accuracy(self.predictions, problem.labels),
            extras={"norm": norms, "apsr": self.apsr.clamp_min(0), "success": self.success.clone(),
                    "forwards": self.forwards.clone(), "backwards": self.backwards.clone(), **extras},
        )
