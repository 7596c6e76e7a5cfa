"""robust_seg: adversarial robustness of semantic segmentation models.

Implements SEA and PIR-AT (Croce et al., "Towards reliable evaluation and fast
training of robust semantic segmentation models") and ALMA prox / CALS (Rony,
thesis chapters 5 and 6) on top of MMSegmentation models.
"""

IGNORE_INDEX = 255
"""Label of unlabelled pixels: never counted in any loss or metric."""

__version__ = "0.1.0"
