"""Per-pixel attack losses of the SEA paper, Sec. 2.2, and the objective they induce.

Every loss takes logits ``u`` (B, K, H, W) and labels ``y`` (B, H, W) and returns the
per-pixel loss (B, H, W), zero at pixels labelled ``IGNORE_INDEX``. Iteration-dependent
losses (Bal-CE) read the keywords ``step`` (t = 1, ..., T) and ``total_steps`` (T); all
others accept and ignore them, so every loss shares one signature. The optional keyword
``predictions`` (argmax of the logits, when the caller has it) spares losses with an
indicator 1[argmax u = y] a second reduction over the classes, and ``labelled`` (``labelled_pixels(labels)``,
when the caller evaluates many iterates against the same labels) spares recomputing the label mask.

All losses are computed from ``log_softmax`` (never ``log(softmax)``), so they stay finite
with finite gradients for confident logits (|u| ~ 1e4).

The per-image objective is the mean of the per-pixel loss over the *labelled* pixels of the
image. (The official SEA code averages over all pixels with ignored pixels zeroed; the two
differ by a positive per-image constant, which changes neither the sign of the gradient nor
any comparison APGD makes within one image, only the reported value.)

Masked losses (Mask-CE, Mask-Sph.): the mask ``1[argmax_j u_j = y]`` enters only the
gradient. The objective tracked by APGD for its step-size rule and best-point selection is
the unmasked loss (paper, App. B.1). ``AttackLoss`` encodes this: ``evaluate`` returns both
the per-pixel loss to differentiate and the per-pixel tracked objective.

Where this implementation knowingly differs from the official SEA code (``nmndeep/Robust-Segmentation``,
``semseg/utils/attacker.py``), and why (the paper first, the code second):

- tracked objective: the official APGD tracks plain CE for every loss; here each loss tracks its own unmasked
  loss, as App. B.1 states ("the objective ... is the unmasked loss"), so APGD's step-size rule follows the loss
  that is being maximised.
- normalisation: the mean over an image's labelled pixels, not over all pixels (above): the same gradient signs
  and comparisons, a value that does not depend on the share of ignored pixels.
- ties: APGD keeps the earliest lowest-accuracy iterate (strict ``<``), SEA's worst case keeps the earlier loss
  on equal accuracy; the official code uses ``<=`` in places (later iterate / loss on ties). Neither changes the
  reported accuracy.
- ignored pixels at a red-eps stage start: the official code counts them as wrong when it picks the point handed
  to the next stage (a bug); here they never count (ACC is over labelled pixels everywhere).
- Bal-CE's lambda(t) restarts at every red-eps stage, as in the official code (``apgd(loss_schedule="stage")``,
  the default, measured stronger on the shipped model: docs/agreement.md); ``loss_schedule="run"`` counts t over
  the whole run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from robust_seg import IGNORE_INDEX

PixelLoss = Callable[..., torch.Tensor]

_NORM_FLOOR = 1e-12
"""||u||_2 is computed as sqrt(sum_k u_k^2 + floor^2): finite value and gradient at u = 0.
(``Tensor.norm(dim=1)`` gives the same value but is ~8x slower on the CPU.)"""


def labelled_pixels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid mask, labels with ignored pixels replaced by class 0 so they can be gathered)."""
    valid = labels != IGNORE_INDEX
    return valid, torch.where(valid, labels, torch.zeros_like(labels)).long()


def predicted_classes(logits: torch.Tensor) -> torch.Tensor:
    """argmax_j u_j over the class dimension, (B, K, H, W) -> (B, H, W) int64, first maximum on ties.

    On the CPU ``Tensor.argmax(1)`` over the strided class dimension is about 10x slower than
    this equivalent: ``amax`` (fast) and an equality mask weighted by K - k, whose maximum
    marks the first maximal class. Other devices use ``argmax``.
    """
    logits = logits.detach()
    classes = logits.shape[1]
    if logits.device.type != "cpu":
        return logits.argmax(1)
    dtype = torch.uint8 if classes <= 255 else torch.int32
    weights = torch.arange(classes, 0, -1, dtype=dtype, device=logits.device).reshape(1, classes, 1, 1)
    is_max = logits == logits.amax(1, keepdim=True)
    is_max = is_max.view(torch.uint8).to(dtype)  # bool -> uint8 reinterprets in place; .to is a no-op for uint8
    first = is_max.mul_(weights).amax(1)  # K - k for the first maximal class k; 0 where none (a NaN pixel)
    return torch.rsub(first, classes).clamp_max_(classes - 1).long()  # in the small dtype, then int64 once


def correctly_classified(logits: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor | None = None,
                         labelled: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Mask 1[argmax_j u_j = y] (B, H, W); False at ignored pixels. Never differentiated.

    ``predictions``: argmax of ``logits`` when the caller already has it (saves a reduction); ``labelled``:
    ``labelled_pixels(labels)`` when the caller has it.
    """
    if predictions is None:
        predictions = predicted_classes(logits)
    return (predictions == labels) & (labels != IGNORE_INDEX if labelled is None else labelled[0])


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, **_: object) -> torch.Tensor:
    """L_CE(u, y) = -log p_y = -u_y + log sum_j exp(u_j) (Sec. 2.2.1)."""
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_INDEX, reduction="none")


def bal_ce_lambda(step: int, total_steps: int) -> float:
    """SegPGD weight lambda(t) = (t - 1) / (2T), t = 1, ..., T (Sec. 2.2.1)."""
    if step is None or total_steps is None:
        raise ValueError("Bal-CE needs the keywords step (t) and total_steps (T)")
    if not 1 <= step <= total_steps:
        raise ValueError(f"Bal-CE step t={step} must lie in 1..T={total_steps}")
    return (step - 1) / (2 * total_steps)


def balanced_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: int | None = None,
    total_steps: int | None = None,
    predictions: torch.Tensor | None = None,
    labelled: tuple[torch.Tensor, torch.Tensor] | None = None,
    **_: object,
) -> torch.Tensor:
    """L_Bal-CE = ((1 - lambda(t)) 1[argmax u = y] + lambda(t) 1[argmax u != y]) L_CE (SegPGD, Sec. 2.2.1).

    The indicator weights are piecewise constant in u, hence carry no gradient.
    """
    lam = bal_ce_lambda(step, total_steps)
    correct = correctly_classified(logits, labels, predictions, labelled)
    weight = lam + (1.0 - 2.0 * lam) * correct.to(logits.dtype)
    return weight * cross_entropy(logits, labels)


def cosine_similarity_weight(logits: torch.Tensor, labels: torch.Tensor,
                             labelled: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """CosPGD weight <sigma(u), e_y> / ||sigma(u)||_2 = sigma(u_y) / ||sigma(u)||_2, detached (B, H, W).

    Evaluated in log space, exp(log sigma(u_y) - logsumexp(2 log sigma(u)) / 2), so that it stays
    exact when every sigma(u_k) underflows (all logits very negative).
    """
    _, gather_labels = labelled or labelled_pixels(labels)
    log_sig = F.logsigmoid(logits.detach())
    log_sig_y = log_sig.gather(1, gather_labels.unsqueeze(1)).squeeze(1)
    return torch.exp(log_sig_y - 0.5 * torch.logsumexp(2.0 * log_sig, dim=1))


def cosine_similarity_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                                    labelled: tuple[torch.Tensor, torch.Tensor] | None = None, **_: object) -> torch.Tensor:
    """L_CosSim-CE = sigma(u_y) / ||sigma(u)||_2 * L_CE (CosPGD, Sec. 2.2.1).

    The weight is detached, so the gradient is the "gradient" the CosPGD authors use:
    weight * grad L_CE (as the paper states; not the true gradient of the product).
    """
    return cosine_similarity_weight(logits, labels, labelled) * cross_entropy(logits, labels)


def _js_from_log_p(log_p: torch.Tensor) -> torch.Tensor:
    """D_JS(p || e_y) as a function of log p_y: log 2 - (1 + p_y) log(1 + p_y) / 2 + p_y log(p_y) / 2.

    This is App. A's closed form D_JS = 1/2 log(2 / (1 + p_y)) + 1/2 sum_i p_i log(2 p_i / (delta_yi + p_i))
    simplified with sum_i p_i = 1. ``p_y log p_y`` is evaluated as exp(lp) * lp, which is finite (-> 0)
    with a finite gradient (exp(lp) (lp + 1) -> 0) when p_y underflows.
    """
    p = log_p.exp()
    return math.log(2.0) - 0.5 * (1.0 + p) * torch.log1p(p) + 0.5 * p * log_p


def jensen_shannon(logits: torch.Tensor, labels: torch.Tensor,
                   labelled: tuple[torch.Tensor, torch.Tensor] | None = None, **_: object) -> torch.Tensor:
    """L_JS(u, y) = D_JS(softmax(u) || e_y) (Sec. 2.2.2); bounded by log 2, gradient -> 0 as p_y -> 0."""
    valid, gather_labels = labelled or labelled_pixels(labels)
    log_p = F.log_softmax(logits, dim=1).gather(1, gather_labels.unsqueeze(1)).squeeze(1)
    return torch.where(valid, _js_from_log_p(log_p), torch.zeros_like(log_p))


def spherical(logits: torch.Tensor, labels: torch.Tensor,
              labelled: tuple[torch.Tensor, torch.Tensor] | None = None, **_: object) -> torch.Tensor:
    """Unmasked spherical loss -u_y / ||u||_2 (Bickel 2007), the objective tracked for Mask-Sph."""
    valid, gather_labels = labelled or labelled_pixels(labels)
    u_y = logits.gather(1, gather_labels.unsqueeze(1)).squeeze(1)
    loss = -u_y / (logits.square().sum(1) + _NORM_FLOOR**2).sqrt()
    return torch.where(valid, loss, torch.zeros_like(loss))


@dataclass(frozen=True)
class AttackLoss:
    """A registry entry: the loss to differentiate and the objective APGD tracks.

    ``base`` is the unmasked per-pixel loss; ``masked`` multiplies it by
    1[argmax u = y] for the gradient only (App. B.1), so the tracked objective
    stays ``base``. ``targetable``: whether the negated loss towards a target map is
    a meaningful targeted objective (App. D uses -JS; -CE is the usual targeted CE).
    """

    name: str
    base: PixelLoss
    masked: bool = False
    targetable: bool = False

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, **keywords: object) -> torch.Tensor:
        """The paper's per-pixel loss (masked where the loss is masked)."""
        return self.evaluate(logits, labels, **keywords)[0]

    def evaluate(
        self, logits: torch.Tensor, labels: torch.Tensor, *, predictions: torch.Tensor | None = None,
        labelled: tuple[torch.Tensor, torch.Tensor] | None = None, **steps: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-pixel loss whose gradient drives the attack, per-pixel tracked objective)."""
        objective = self.base(logits, labels, predictions=predictions, labelled=labelled, **steps)
        if not self.masked:
            return objective, objective
        correct = correctly_classified(logits, labels, predictions, labelled)
        return correct.to(objective.dtype) * objective, objective


LOSSES: dict[str, AttackLoss] = {
    "ce": AttackLoss("ce", cross_entropy, targetable=True),
    "bal_ce": AttackLoss("bal_ce", balanced_cross_entropy),
    "cossim_ce": AttackLoss("cossim_ce", cosine_similarity_cross_entropy),
    "js": AttackLoss("js", jensen_shannon, targetable=True),
    "mask_ce": AttackLoss("mask_ce", cross_entropy, masked=True),
    "mask_sph": AttackLoss("mask_sph", spherical, masked=True),
}
"""The six losses of Sec. 2.2 by name."""


def get_loss(name: str) -> AttackLoss:
    """Registry lookup with a helpful error."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown attack loss {name!r}; choose from {sorted(LOSSES)}") from None


def per_image_mean(pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of a (B, H, W) per-pixel quantity over each image's labelled pixels, shape (B,)."""
    count = (labels != IGNORE_INDEX).flatten(1).sum(1).clamp_min(1)
    return pixel_values.flatten(1).sum(1) / count.to(pixel_values.dtype)
