"""Pure-PyTorch stand-ins for the few ``mmcv.ops`` that MMSegmentation imports.

We install ``mmcv-lite`` (a pure wheel) instead of compiling full mmcv (about
10 minutes on 2 cores). mmseg 1.2.2 imports ``mmcv.ops`` unguarded in four
modules (``point_sample`` in three, ``sigmoid_focal_loss`` in one), and
``mmcv/ops/__init__.py`` eagerly loads the compiled extension, so
``import mmseg.models`` fails with mmcv-lite. :func:`ensure_mmcv_ops` registers a
small ``mmcv.ops`` module providing exactly those two functions, implemented
with plain PyTorch, *only* when the compiled ops cannot be imported. With full
mmcv installed it does nothing.
"""
from __future__ import annotations

import importlib
import sys
import types
import warnings

import torch
import torch.nn.functional as F

__all__ = ["ensure_mmcv_ops", "point_sample", "sigmoid_focal_loss", "USING_FALLBACK"]

USING_FALLBACK = False
"""True once the pure-PyTorch fallback has been registered as ``mmcv.ops``."""


def point_sample(input: torch.Tensor, points: torch.Tensor, align_corners: bool = False, **kwargs) -> torch.Tensor:
    """Bilinearly sample ``input`` (N, C, H, W) at ``points`` in [0, 1] coordinates.

    Same contract as ``mmcv.ops.point_sample``: ``points`` is (N, P, 2) giving
    (N, C, P), or (N, Hg, Wg, 2) giving (N, C, Hg, Wg).
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    output = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return output.squeeze(3) if add_dim else output


def sigmoid_focal_loss(pred: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25,
                       weight: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Sigmoid focal loss with integer class targets, as ``mmcv.ops.sigmoid_focal_loss``.

    ``pred`` is (N, C) logits, ``target`` (N,) class indices (an index equal to
    C means 'no class'), ``weight`` an optional per-sample weight (N,).
    """
    num_classes = pred.size(1)
    one_hot = F.one_hot(target.long().clamp(max=num_classes), num_classes + 1)[:, :num_classes].to(pred.dtype)
    prob = pred.sigmoid()
    ce = F.binary_cross_entropy_with_logits(pred, one_hot, reduction="none")
    p_t = prob * one_hot + (1 - prob) * (1 - one_hot)
    alpha_t = alpha * one_hot + (1 - alpha) * (1 - one_hot)
    loss = alpha_t * (1 - p_t).pow(gamma) * ce
    if weight is not None:
        loss = loss * weight.reshape(-1, 1)
    if reduction == "mean":
        return loss.sum() / pred.size(0)
    if reduction == "sum":
        return loss.sum()
    return loss


def _missing_op(name: str):
    """Module ``__getattr__``: any other op is reported missing the way guarded mmseg imports expect."""
    if name.startswith("__"):
        raise AttributeError(name)
    raise ModuleNotFoundError(
        f"mmcv.ops.{name} needs the compiled mmcv; robust_seg runs with mmcv-lite "
        "(install full mmcv 2.1 to use it)")


def ensure_mmcv_ops() -> bool:
    """Make ``import mmcv.ops`` work. Returns True if the fallback was installed.

    Idempotent; a no-op when compiled mmcv ops import cleanly.
    """
    global USING_FALLBACK
    if USING_FALLBACK:
        return True
    try:
        importlib.import_module("mmcv.ops")
        return False
    except (ImportError, OSError):
        pass
    import mmcv

    sys.modules.pop("mmcv.ops", None)
    module = types.ModuleType("mmcv.ops")
    module.__doc__ = "robust_seg pure-PyTorch fallback for mmcv.ops (see robust_seg.compat.mmcv_ops)"
    module.point_sample = point_sample
    module.sigmoid_focal_loss = sigmoid_focal_loss
    module.__robust_seg_fallback__ = True
    module.__getattr__ = _missing_op
    warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
    sys.modules["mmcv.ops"] = module
    mmcv.ops = module
    USING_FALLBACK = True
    return True
