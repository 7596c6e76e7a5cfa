"""Segmentation models built through MMSeg's registry, behind one wrapper (:class:`SegmentationModel`)."""
from robust_seg.models.build import build_model, load_segmentation_checkpoint, register_modules
from robust_seg.models.checkpoints import CheckpointError
from robust_seg.models.config import ModelConfig
from robust_seg.models.wrapper import SegmentationModel

__all__ = ["build_model", "load_segmentation_checkpoint", "register_modules", "CheckpointError", "ModelConfig",
           "SegmentationModel"]
