"""Segmentation models built through MMSeg's registry, behind one wrapper (:class:`SegmentationModel`).

The names below are imported on first use, so that a light module of this package (``zoo``, ``config``) does not
load torch and MMSegmentation.
"""
import importlib

_HOMES = {"build_model": "build", "load_segmentation_checkpoint": "build", "register_modules": "build",
          "CheckpointError": "checkpoints", "ModelConfig": "config", "SegmentationModel": "wrapper"}

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'robust_seg.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"robust_seg.models.{_HOMES[name]}"), name)
