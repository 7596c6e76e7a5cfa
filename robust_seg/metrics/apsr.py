"""Metrics of minimal-norm attacks on segmentation (thesis Ch. 5, Sec. 5.5.3 and App. IV-7/8; SEA paper App. C.4).

The attack pixel success rate (APSR, eq. 5.19) of an image is the fraction of its
labelled pixels whose prediction is wrong (untargeted) or equal to the target
(targeted); an attack succeeds on an image when APSR >= nu (nu = 0.99 in both
papers). Summaries follow Table 5.1 (median / mean ||delta||_inf x 255, failures
counted as 1), Figure 5.3 (fraction of images not yet fooled versus eps), Table
IV-2/IV-3 (forwards, backwards, seconds per image) and SEA App. C.4 (percentage of
images an attack cannot bring to APSR >= 99% at each eps).

All functions are pure: tensors in, tensors / dicts / lists out. Only
``save_failure_curves_png`` writes a file.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from robust_seg import IGNORE_INDEX

DEFAULT_NU = 0.99
"""APSR threshold of a successful attack in both papers."""


def attacked_pixels(labels: torch.Tensor, target_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The binary mask m of eq. 5.5: labelled pixels, and for targeted attacks pixels with a target.

    Choice (the thesis leaves it implicit): a targeted attack ignores pixels that
    are unlabelled in either the ground truth or the target map.
    """
    mask = labels != IGNORE_INDEX
    if target_labels is not None:
        mask = mask & (target_labels != IGNORE_INDEX)
    return mask


def pixel_success(predictions: torch.Tensor, labels: torch.Tensor,
                  target_labels: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W) bool: attacked pixel predicted != label (untargeted) or == target (targeted)."""
    hit = predictions != labels if target_labels is None else predictions == target_labels
    return hit & attacked_pixels(labels, target_labels)


def apsr(predictions: torch.Tensor, labels: torch.Tensor, target_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Attack pixel success rate per image, eq. 5.19, shape (B,) float64.

    An image without any attacked pixel has APSR 0 (it can never count as fooled).
    """
    count = attacked_pixels(labels, target_labels).flatten(1).sum(1)
    hits = pixel_success(predictions, labels, target_labels).flatten(1).sum(1)
    return hits.double() / count.clamp_min(1).double()


def linf_norms(adv_images: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """||adv - x||_inf per image, float64 (B,)."""
    return (adv_images.double() - images.double()).flatten(1).abs().amax(1)


def norms_with_failures(norms: torch.Tensor, success: torch.Tensor) -> torch.Tensor:
    """Per-image norm with unsuccessful attacks counted as 1 (= 255/255), as in Table 5.1."""
    return torch.where(success.to(norms.device), norms.double(), torch.ones_like(norms, dtype=torch.float64))


def norm_summary(norms: torch.Tensor, success: torch.Tensor) -> dict:
    """Table 5.1 cell pair: median and mean of ||delta||_inf x 255 (failures = 255), plus the success rate.

    The median of an even count is the mean of the two middle values (numpy
    convention), so it does not depend on which of the two torch would pick.
    """
    counted = norms_with_failures(norms, success).sort().values * 255.0
    n = counted.numel()
    median = 0.5 * float(counted[(n - 1) // 2] + counted[n // 2]) if n else float("nan")
    return {
        "median_x255": median,
        "mean_x255": float(counted.mean()) if n else float("nan"),
        "success_rate": float(success.double().mean()) if n else float("nan"),
        "images": n,
    }


def not_fooled_curve(norms: torch.Tensor, success: torch.Tensor, eps: Sequence[float] | torch.Tensor) -> dict:
    """Fraction of images not fooled (APSR >= nu) by a perturbation of norm <= eps, for each eps.

    Figure 5.3 / IV-3..5 plot this as a percentage ("unsuccessful attacks"); SEA
    App. C.4 (Fig. 6) reports the same quantity as the percentage of images on
    which the model is still robust at radius eps. Returns
    {'eps': [...], 'fraction': [...], 'percentage': [...]}.
    """
    eps = torch.as_tensor(eps, dtype=torch.float64).reshape(-1)
    fooled = success.reshape(1, -1).cpu() & (norms.double().reshape(1, -1).cpu() <= eps.reshape(-1, 1) + 1e-12)
    fraction = 1.0 - fooled.double().mean(1)
    return {"eps": eps.tolist(), "fraction": fraction.tolist(), "percentage": (100.0 * fraction).tolist()}


def not_fooled_percentage(apsr_values: Sequence[float] | torch.Tensor, nu: float = DEFAULT_NU) -> float:
    """SEA App. C.4 from a fixed-radius attack: the % of images it left with APSR < nu (per-image APSR values)."""
    values = torch.as_tensor(apsr_values, dtype=torch.float64)
    return 100.0 * int((values < nu).sum()) / len(values)


def complexity_summary(forwards: torch.Tensor, backwards: torch.Tensor, seconds: float) -> dict:
    """Table IV-2/IV-3 layout: mean forward and backward propagations per image, run-time per image."""
    n = forwards.numel()
    return {
        "forwards": float(forwards.double().mean()),
        "backwards": float(backwards.double().mean()),
        "seconds_per_image": seconds / n if n else float("nan"),
        "images": n,
    }


LINEAR_UNTIL = 2.0 / 255.0
"""Figure 5.3 x axis: linear on [0, 2/255], logarithmic on [2/255, 1]."""


def _split_axis(values):
    """Forward map of the Figure 5.3 axis: identity below 2/255, then log-scaled so that it is continuous and C^1."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    safe = np.maximum(values, LINEAR_UNTIL)
    return np.where(values <= LINEAR_UNTIL, values, LINEAR_UNTIL * (1.0 + np.log(safe / LINEAR_UNTIL)))


def _split_axis_inverse(values):
    import numpy as np

    values = np.asarray(values, dtype=float)
    return np.where(values <= LINEAR_UNTIL, values, LINEAR_UNTIL * np.exp(values / LINEAR_UNTIL - 1.0))


def save_failure_curves_png(curves: Mapping[str, dict], path: str, title: str = "") -> None:
    """Plot several ``not_fooled_curve`` outputs (percentage vs eps x 255) in one PNG (Figure 5.3 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        axis.step(curve["eps"], curve["percentage"], where="post", label=name)
    axis.set_xscale("function", functions=(_split_axis, _split_axis_inverse))
    ticks = [0, 0.5 / 255, 1 / 255, 1.5 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 64 / 255, 1.0]
    axis.set_xticks(ticks, [f"{255 * t:g}" for t in ticks])
    axis.set_xlim(0, 1)
    axis.set_ylim(-2, 102)  # a curve along 0% or 100% stays visible
    axis.set_xlabel("||delta||_inf x 255")
    axis.set_ylabel("unsuccessful attacks (%)")
    if title:
        axis.set_title(title)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def default_eps_grid(points: int = 200) -> list[float]:
    """eps values for the curve: linear on [0, 2/255], logarithmic on [2/255, 1] (half the points each)."""
    half = max(points // 2, 2)
    linear = [LINEAR_UNTIL * i / (half - 1) for i in range(half)]
    logarithmic = [LINEAR_UNTIL * math.exp(math.log(1 / LINEAR_UNTIL) * i / (half - 1)) for i in range(1, half)]
    return linear + logarithmic
