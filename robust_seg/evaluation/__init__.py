"""Robustness evaluation: attack a model over a list of radii and report ACC / mIoU (SEA paper Sec. 2.1)."""
from robust_seg.evaluation.driver import evaluate

__all__ = ["evaluate"]
