"""The embedded default: the shipped small models and the synthetic dataset they were trained on.

Two weights ship for ``small_upernet_convnext``: the adversarially trained default
(``experiment=embedded_train``, PGD 2 steps at 4/255) and a clean-trained twin
(``experiment=embedded_train_clean``, same budget), the setting of the thesis' minimal-norm tables.
"""
from __future__ import annotations


from omegaconf import OmegaConf

from robust_seg.models.build import build_model
from robust_seg.models.config import ModelConfig
from robust_seg.models.wrapper import SegmentationModel
from robust_seg.names import ASSETS, CONFIGS

EMBEDDED_CHECKPOINTS = {"robust": ASSETS / "small_upernet_convnext_synthetic.pt",
                        "clean": ASSETS / "small_upernet_convnext_synthetic_clean.pt"}


def load_embedded_model(variant: str = "robust") -> SegmentationModel:
    """``small_upernet_convnext`` with shipped weights (``robust`` or ``clean``), eval mode, no parameter grads."""
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig),
                          OmegaConf.load(CONFIGS / "model" / "small_upernet_convnext.yaml"),
                          {"checkpoint": str(EMBEDDED_CHECKPOINTS[variant])})
    dataset = OmegaConf.load(CONFIGS / "dataset" / "synthetic.yaml")
    model = build_model(cfg, dataset.num_classes).eval()
    return model.requires_grad_(False)
