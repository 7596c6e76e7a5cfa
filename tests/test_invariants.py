import pytest
import torch

from robust_seg.attacks.invariants import ThreatModelViolation, check_linf_box


def test_accepts_points_inside_the_ball_and_box():
    x = torch.rand(2, 3, 4, 4)
    adv = (x + 0.01 * torch.randn_like(x).sign()).clamp(0, 1)
    check_linf_box(adv, x, 0.01)


@pytest.mark.parametrize("shift", [0.0101, -0.02])
def test_rejects_leaving_the_ball(shift):
    x = torch.full((1, 3, 4, 4), 0.5)
    adv = x.clone()
    adv[0, 1, 2, 3] += shift
    with pytest.raises(ThreatModelViolation, match="Linf norm"):
        check_linf_box(adv, x, 0.01)


def test_rejects_leaving_the_box_and_accepts_per_image_radii():
    x = torch.zeros(2, 3, 2, 2)
    with pytest.raises(ThreatModelViolation, match="box"):
        check_linf_box(x - 0.005, x, 0.01)
    adv = x.clone()
    adv[1] += 0.02
    check_linf_box(adv, x, torch.tensor([0.0, 0.02]))
    with pytest.raises(ThreatModelViolation):
        check_linf_box(adv, x, torch.tensor([0.02, 0.0]))
