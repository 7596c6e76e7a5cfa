"""The embedded default: the shipped small model and the synthetic dataset it was trained on."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from robust_seg.models.build import build_model
from robust_seg.models.config import ModelConfig
from robust_seg.models.wrapper import SegmentationModel

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "small_upernet_convnext_synthetic.pt"


def load_embedded_model() -> SegmentationModel:
    """``small_upernet_convnext`` with the shipped weights, in eval mode, without parameter gradients."""
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig),
                          OmegaConf.load(ROOT / "configs" / "model" / "small_upernet_convnext.yaml"),
                          {"checkpoint": str(EMBEDDED_CHECKPOINT)})
    dataset = OmegaConf.load(ROOT / "configs" / "dataset" / "synthetic.yaml")
    model = build_model(cfg, dataset.num_classes).eval()
    return model.requires_grad_(False)
