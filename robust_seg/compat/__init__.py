"""Compatibility shims for third-party packages (see :mod:`robust_seg.compat.mmcv_ops` and
:mod:`robust_seg.compat.lean_import`)."""
from robust_seg.compat.mmcv_ops import ensure_mmcv_ops

__all__ = ["ensure_mmcv_ops"]
