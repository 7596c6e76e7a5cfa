"""Per-pixel misclassification constraints of the minimal-norm attacks (thesis eq. 4.4, 5.3, A III-8).

Every function returns a (B, H, W) map that is negative exactly where the pixel
is fooled (untargeted: argmax != label; targeted: argmax == target), so all
attacks share one sign convention. ``labels`` is the true label map for
untargeted attacks and the target map for targeted ones; unlabelled pixels
(IGNORE_INDEX) get an arbitrary finite value and must be masked by the caller.
"""
from __future__ import annotations

import torch

from robust_seg import IGNORE_INDEX

DENOMINATOR_FLOOR = 1e-12
"""Guards the DLR denominators against exact logit ties."""


def _safe_labels(labels: torch.Tensor) -> torch.Tensor:
    return labels.masked_fill(labels == IGNORE_INDEX, 0).long().unsqueeze(1)


def _label_and_other_max(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z_y and max_{i != y} z_i, each (B, H, W)."""
    index = _safe_labels(labels)
    label_logit = logits.gather(1, index).squeeze(1)
    other_max = logits.scatter(1, index, float("-inf")).amax(1)
    return label_logit, other_max


def logit_difference(logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """z_y - max_{i!=y} z_i (untargeted) or max_{i!=t} z_i - z_t (targeted): the DAG / FMN / PDPGD constraint."""
    label_logit, other_max = _label_and_other_max(logits, labels)
    return other_max - label_logit if targeted else label_logit - other_max


def top_logits(logits: torch.Tensor, targeted: bool = False) -> torch.return_types.topk:
    """The 3 (untargeted) or 4 (targeted) largest logits per pixel that DLR+ / tDLR+ need; indices[:, 0] is the prediction."""
    needed = 4 if targeted else 3
    if logits.shape[1] < needed:
        raise ValueError(f"{'tDLR+' if targeted else 'DLR+'} needs at least {needed} classes, got {logits.shape[1]}")
    return logits.topk(needed, dim=1)


def dlr_plus(logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False,
             top: torch.return_types.topk | None = None) -> torch.Tensor:
    """DLR+ (eq. 4.4) or, targeted, tDLR+ (eq. A III-8), per pixel.

    DLR+(z, y) = (z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3), needs K >= 3 classes;
    tDLR+(z, t) = (max_{i!=t} z_i - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), needs K >= 4.
    Both are scale invariant and lie in [-1, 1] (untargeted) / are bounded above by 1.
    ``top``: ``top_logits(logits, targeted)`` when the caller already has it.
    """
    top = (top_logits(logits, targeted) if top is None else top).values
    if targeted:
        denominator = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3])
    else:
        denominator = top[:, 0] - top[:, 2]
    return logit_difference(logits, labels, targeted) / denominator.clamp_min(DENOMINATOR_FLOOR)


def decayed_constraint_mask(constraints: torch.Tensor, valid: torch.Tensor, valid_counts: torch.Tensor,
                            dropped_fraction: float) -> torch.Tensor:
    """Constraint masking of eq. 5.6: keep the valid pixels whose constraint is <= the xi-percentile.

    ``dropped_fraction`` is 1 - xi (so (1 - nu)(t - 1)/(N - 1) for the linear decay of
    eq. 5.6); per image, floor(dropped_fraction * ||m||_1) of the largest constraints
    are discarded (ties with the threshold are kept). ``valid_counts`` (B,) int64 on
    the CPU, so choosing the top-k size never waits on the device.
    """
    dropped = (valid_counts.double() * dropped_fraction + 1e-9).floor().long()
    largest = int(dropped.max()) if dropped.numel() else 0
    if largest == 0:
        return valid
    flat = constraints.masked_fill(~valid, float("-inf")).flatten(1)
    top = flat.topk(largest + 1, dim=1).values
    threshold = top.gather(1, dropped.to(top.device).unsqueeze(1)).squeeze(1)
    return valid & (constraints <= threshold.view(-1, *[1] * (constraints.ndim - 1)))
