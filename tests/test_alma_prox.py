"""ALMA prox (thesis Algorithm IV-2): penalty, constraints, masking and a toy model with a known optimum."""
import math

import pytest
import torch
from torch import nn

from robust_seg.attacks.minimal_norm import alma_prox
from robust_seg.attacks.minimal_norm.constraints import (DENOMINATOR_FLOOR, decayed_constraint_mask, dlr_plus,
                                                         logit_difference)
from robust_seg.attacks.minimal_norm.penalties import P2Derivative

torch.set_num_threads(1)


def p2_penalty(y: torch.Tensor, rho: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Eq. 5.9 as the thesis writes it, element-wise (differentiable by autograd on both branches)."""
    negative = y.clamp(max=0)
    below = mu * negative / (1 - rho.clamp(min=1) * negative)
    above = mu * y + mu * rho * y.square() + rho.square() * y.pow(3) / 6
    return torch.where(y >= 0, above, below)


def p2_penalty_derivative(y: torch.Tensor, rho: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """dP/dy of eq. 5.9 by hand, element-wise."""
    negative = y.clamp(max=0)
    below = mu / (1 - rho.clamp(min=1) * negative).square()
    above = mu + 2 * mu * rho * y + 0.5 * rho.square() * y.square()
    return torch.where(y >= 0, above, below)


def paper_dlr_plus(logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """DLR+ (eq. 4.4) / tDLR+ (eq. A III-8) as the thesis writes them, with ``topk`` (differentiable by autograd):
    (z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3), or (max_{i!=t} z_i - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    top = logits.topk(4 if targeted else 3, dim=1).values
    denominator = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) if targeted else top[:, 0] - top[:, 2]
    return logit_difference(logits, labels, targeted) / denominator.clamp_min(DENOMINATOR_FLOOR)


def test_penalty_derivative_matches_autograd_and_is_mu_at_zero():
    generator = torch.Generator().manual_seed(0)
    y = torch.cat([torch.randn(200, generator=generator, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)])
    rho = 10 ** (3 * torch.rand(205, generator=generator, dtype=torch.float64) - 2)
    mu = 10 ** (2 * torch.rand(205, generator=generator, dtype=torch.float64) - 1)
    y.requires_grad_(True)
    (autograd,) = torch.autograd.grad(p2_penalty(y, rho, mu).sum(), y)
    analytic = p2_penalty_derivative(y.detach(), rho, mu)
    assert torch.allclose(analytic, autograd, rtol=1e-10, atol=1e-12)
    assert torch.equal(analytic[-5:], mu[-5:])  # Axiom 2: P'(0) = mu
    h = 1e-6
    finite = (p2_penalty(y.detach() + h, rho, mu) - p2_penalty(y.detach() - h, rho, mu)) / (2 * h)
    assert torch.allclose(analytic, finite, rtol=1e-5, atol=1e-6)
    assert (analytic > 0).all()  # Axiom 1
    kernel = P2Derivative(y.detach())  # ALMA prox's form: the same values
    kernel.set_y(y.detach())
    kernel.set_rho(rho, rho.clamp(min=1))
    assert torch.allclose(kernel(mu, torch.empty_like(mu)), analytic, rtol=1e-12, atol=1e-12)
    # eq. 5.9 closed form at hand-picked points
    one = torch.tensor([1.0], dtype=torch.float64)
    assert torch.allclose(p2_penalty(one, 2 * one, 3 * one), torch.tensor([3 + 6 + 4 / 6], dtype=torch.float64))
    assert torch.allclose(p2_penalty(-one, 0.5 * one, 3 * one), torch.tensor([-1.5], dtype=torch.float64))


def test_dlr_plus_closed_form():
    logits = torch.tensor([5.0, 3.0, 1.0, 0.0]).view(1, 4, 1, 1)
    label = torch.tensor([[[0]]])
    assert torch.allclose(dlr_plus(logits, label), torch.tensor((5 - 3) / (5 - 1)))
    assert torch.allclose(dlr_plus(logits, torch.tensor([[[2]]])), torch.tensor((1 - 5) / (5 - 1)))
    # tDLR+ (A III-8) towards class 1: (max_{i != 1} z_i - z_1) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    assert torch.allclose(dlr_plus(logits, torch.tensor([[[1]]]), targeted=True), torch.tensor((5 - 3) / (5 - 0.5)))
    assert torch.allclose(logit_difference(logits, torch.tensor([[[1]]])), torch.tensor(-2.0))
    scaled = dlr_plus(7 * logits, label)  # scale invariance
    assert torch.allclose(scaled, dlr_plus(logits, label))


def test_decayed_mask_drops_the_largest_constraints():
    constraints = torch.arange(100, dtype=torch.float64).view(1, 10, 10)
    valid = torch.ones(1, 10, 10, dtype=torch.bool)
    valid[0, 9, 9] = False  # the largest value is unlabelled
    counts = valid.flatten(1).sum(1)
    kept = decayed_constraint_mask(constraints, valid, counts, 0.05)  # floor(0.05 * 99) = 4 dropped
    assert int(kept.sum()) == 95 and not kept[0, 9, 9] and kept[0, 9, 4] and not kept[0, 9, 5]
    assert torch.equal(decayed_constraint_mask(constraints, valid, counts, 0.0), valid)


class SharedDirectionLinear(nn.Module):
    """Per-pixel linear model: z0 - z1 = s (w.x - w.1/2), classes 2 and 3 far below.

    A pixel x = 1/2 + t sign(w) is class 0 with margin t: the smallest Linf change that
    flips it is exactly t (boxes never bind for t < 1/2), so the smallest ||delta||_inf
    that fools a fraction nu of the pixels is the ceil(nu n)-th smallest margin.
    """

    def __init__(self, w, scale=10.0):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, :, 0, 0] = scale * w
            self.conv.bias[0] = -scale * 0.5 * w.sum()
            self.conv.bias[2] = -5 * scale
            self.conv.bias[3] = -6 * scale

    def forward(self, x):
        return self.conv(x)


def toy_problem():
    torch.manual_seed(0)
    w = torch.tensor([1.0, -1.0, 1.0])
    margins = torch.rand(3, 12, 12) * 0.028 + 0.002
    images = 0.5 + margins.unsqueeze(1) * w.view(1, 3, 1, 1)
    labels = torch.zeros(3, 12, 12, dtype=torch.long)
    labels[:, 0, :3] = 255
    valid = labels != 255
    optimum = []
    for b in range(3):
        sorted_margins = margins[b][valid[b]].sort().values
        optimum.append(float(sorted_margins[math.ceil(0.99 * sorted_margins.numel()) - 1]))
    model = SharedDirectionLinear(w).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, images, labels, torch.tensor(optimum, dtype=torch.float64)


@pytest.mark.parametrize("targeted", [False, True])
def test_alma_prox_finds_known_minimal_norm(targeted):
    model, images, labels, optimum = toy_problem()
    target = torch.ones_like(labels) if targeted else None
    result = alma_prox(model, images, labels, targeted=targeted, target_labels=target)
    extras = result.extras
    assert extras["success"].all() and (extras["apsr"] >= 0.99).all()
    assert (extras["norm"] >= optimum * (1 - 1e-3)).all()  # nobody beats the optimum
    assert (extras["norm"] <= optimum * 1.05).all(), (extras["norm"] * 255, optimum * 255)
    assert (extras["forwards"] == 500).all() and (extras["backwards"] == 500).all()
    assert result.adv_images.min() >= 0 and result.adv_images.max() <= 1
    assert not result.adv_images.requires_grad  # the best iterates are detached copies
    assert torch.equal(result.predictions, model(result.adv_images).argmax(1))


def test_alma_prox_reports_failure_with_best_apsr():
    model, images, labels, optimum = toy_problem()
    result = alma_prox(model, images, labels, iterations=5)  # far too few steps to reach the margins
    assert not result.extras["success"].any()
    assert (result.extras["apsr"] < 0.99).all()
    assert set(result.extras) >= {"norm", "apsr", "success", "forwards", "backwards"}


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("classes", [4, 6, 21])
def test_dlr_plus_object_matches_dlr_plus_and_autograd(targeted, classes):
    """DLRPlus (ALMA prox's constraint): values bit for bit, argmax predictions, and autograd's logit gradient."""
    from robust_seg.attacks.minimal_norm.constraints import DLRPlus

    generator = torch.Generator().manual_seed(classes)
    labels = torch.randint(0, classes, (3, 9, 7), generator=generator)
    labels[:, 0] = 255
    constraint = DLRPlus(labels, classes, targeted, torch.float32)
    for _ in range(2):  # buffers are reused across calls
        logits = torch.randn(3, classes, 9, 7, generator=generator)
        upstream = torch.randn(3, 9, 7, generator=generator)
        values, predictions = constraint(logits)
        leaf = logits.clone().requires_grad_(True)
        reference = paper_dlr_plus(leaf, labels, targeted)
        (expected,) = torch.autograd.grad(reference, leaf, grad_outputs=upstream)
        assert torch.equal(values, reference.detach())
        assert torch.equal(predictions, logits.argmax(1))
        assert torch.equal(constraint.gradient(upstream), expected)
        function_leaf = logits.clone().requires_grad_(True)  # dlr_plus: the kernel as a differentiable function
        function_values = dlr_plus(function_leaf, labels, targeted)
        (function_gradient,) = torch.autograd.grad(function_values, function_leaf, grad_outputs=upstream)
        assert torch.equal(function_values.detach(), reference.detach()) and torch.equal(function_gradient, expected)
    with pytest.raises(ValueError, match="needs at least"):
        DLRPlus(labels, 3, True, torch.float32)


@pytest.mark.parametrize("targeted", [False, True])
def test_dlr_plus_object_with_tied_logits(targeted):
    """Integer logits tie often (the label with the maximum, several maxima): values still equal dlr_plus's
    (topk's order statistics with multiplicity) and predictions argmax's first index."""
    from robust_seg.attacks.minimal_norm.constraints import DLRPlus

    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 6, (4, 8, 8), generator=generator)
    logits = torch.randint(0, 3, (4, 6, 8, 8), generator=generator).float()
    values, predictions = DLRPlus(labels, 6, targeted, torch.float32)(logits)
    label_logit = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    assert (label_logit == logits.amax(1)).any() and ((logits == logits.amax(1, keepdim=True)).sum(1) > 1).any()
    assert torch.equal(values, paper_dlr_plus(logits, labels, targeted))
    assert torch.equal(predictions, logits.argmax(1))


def test_penalty_derivative_object_matches_the_function():
    from robust_seg.attacks.minimal_norm.penalties import P2Derivative

    generator = torch.Generator().manual_seed(1)
    y = torch.cat([torch.randn(300, generator=generator, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)])
    derivative = P2Derivative(y)
    derivative.set_y(y)
    for _ in range(2):
        rho = 10 ** (6 * torch.rand(305, generator=generator, dtype=torch.float64) - 2)
        derivative.set_rho(rho, rho.clamp(min=1))
        for _ in range(2):  # several mu at the same y and rho
            mu = 10 ** (4 * torch.rand(305, generator=generator, dtype=torch.float64) - 2)
            out = derivative(mu, out=torch.empty_like(y))
            assert torch.allclose(out, p2_penalty_derivative(y, rho, mu), rtol=1e-12, atol=0)
            assert torch.equal(out[-5:], mu[-5:])  # P'(0) = mu exactly


def test_constraint_mask_matches_decayed_constraint_mask():
    from robust_seg.attacks.minimal_norm.alma_prox import constraint_mask

    generator = torch.Generator().manual_seed(2)
    constraints = torch.randn(3, 10, 10, generator=generator)
    valid = torch.rand(3, 10, 10, generator=generator) > 0.2
    valid[2] = False  # an image without labelled pixels
    counts = valid.flatten(1).sum(1)
    labelled = valid.float()
    offset = torch.zeros(3, 10, 10).masked_fill_(~valid, float("-inf"))
    for fraction in (0.0, 0.01, 0.05, 0.3):
        out = constraint_mask(constraints, labelled, offset, counts.tolist(), fraction, torch.empty_like(constraints),
                              torch.empty_like(constraints))
        assert torch.equal(out.bool(), decayed_constraint_mask(constraints.double(), valid, counts, fraction))


@pytest.mark.parametrize("targeted", [False, True])
def test_attack_problem_apsr_matches_the_metric(targeted):
    from robust_seg.attacks.minimal_norm.tracking import AttackProblem
    from robust_seg.metrics.apsr import apsr

    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 5, (4, 8, 8), generator=generator)
    labels[0, :2] = 255
    labels[3] = 255  # no attacked pixel: APSR 0
    target = torch.randint(0, 5, (4, 8, 8), generator=generator) if targeted else None
    if targeted:
        target[1, 3:] = 255
    problem = AttackProblem(torch.rand(4, 3, 8, 8), labels, targeted, target)
    for _ in range(3):
        predictions = torch.randint(0, 5, (4, 8, 8), generator=generator)
        assert torch.equal(problem.apsr(predictions), apsr(predictions, labels, target))


@pytest.mark.parametrize("targeted", [False, True])
def test_apsr_of_float_class_indices_matches_integer_ones(targeted):
    """ALMA prox passes DLRPlus's float class indices to AttackProblem.apsr: the same APSR as the integer labels."""
    from robust_seg.attacks.minimal_norm.tracking import AttackProblem

    generator = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 5, (3, 6, 6), generator=generator)
    labels[0, :2] = 255
    targets = torch.randint(0, 5, (3, 6, 6), generator=generator)
    predictions = torch.randint(0, 5, (3, 6, 6), generator=generator)
    problem = AttackProblem(torch.rand(3, 3, 6, 6), labels, targeted, targets)
    expected = problem.apsr(predictions)
    assert 0 < expected.min() and expected.max() < 1
    for _ in range(2):  # the float path reuses its buffers
        assert torch.equal(problem.apsr(predictions.float()), expected)
