import importlib
import sys

import pytest
import torch
import torch.nn.functional as F

from robust_seg.compat import mmcv_ops


def test_point_sample_matches_grid_sample_at_pixel_centres():
    torch.manual_seed(0)
    features = torch.randn(2, 4, 5, 7)
    # pixel centres in [0, 1] coordinates sample exact values (align_corners=False)
    rows, cols = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 6])
    points = torch.stack([(cols + 0.5) / 7, (rows + 0.5) / 5], dim=-1).expand(2, 3, 2)
    sampled = mmcv_ops.point_sample(features, points)
    assert sampled.shape == (2, 4, 3)
    assert torch.allclose(sampled, features[:, :, rows, cols], atol=1e-6)
    grid = torch.rand(2, 3, 4, 2)
    assert torch.allclose(mmcv_ops.point_sample(features, grid), F.grid_sample(features, 2 * grid - 1,
                                                                                align_corners=False))


def test_sigmoid_focal_loss_closed_form():
    pred = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    target = torch.tensor([0, 2])  # second sample: 'no class' (index == num_classes)
    gamma, alpha = 2.0, 0.25
    p = pred.sigmoid()
    t = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    expected = -(alpha * t * (1 - p) ** gamma * p.log() + (1 - alpha) * (1 - t) * p ** gamma * (1 - p).log())
    loss = mmcv_ops.sigmoid_focal_loss(pred, target, gamma, alpha, None, "none")
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.isclose(mmcv_ops.sigmoid_focal_loss(pred, target, gamma, alpha, None, "mean"), expected.sum() / 2)


def test_fallback_makes_mmseg_importable_and_reports_other_ops_missing():
    mmcv_ops.ensure_mmcv_ops()
    import mmseg.models  # noqa: F401  (fails without mmcv.ops)

    ops = sys.modules["mmcv.ops"]
    if getattr(ops, "__robust_seg_fallback__", False):
        assert ops.point_sample is mmcv_ops.point_sample
        with pytest.raises(ModuleNotFoundError, match="compiled mmcv"):
            from mmcv.ops import CrissCrossAttention  # noqa: F401


def test_stays_out_of_the_way_when_compiled_ops_import(monkeypatch):
    real = importlib.import_module
    compiled = type(sys)("mmcv.ops")
    monkeypatch.setattr(mmcv_ops, "USING_FALLBACK", False)
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: compiled if name == "mmcv.ops" else real(name, *a))
    assert mmcv_ops.ensure_mmcv_ops() is False
