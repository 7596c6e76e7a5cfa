"""Training losses of Table 6.2 against closed forms on hand-made logits."""
import math

import pytest
import torch
import torch.nn.functional as F

from robust_seg import IGNORE_INDEX
from robust_seg.training.losses import (
    ClassAdaptiveLabelSmoothing,
    ConfidencePenalty,
    CrossEntropy,
    FocalLoss,
    LabelSmoothing,
    MarginLabelSmoothing,
    TrainLoss,
    build_train_loss,
)

# One image, 3 classes, 1 x 3 pixels: two labelled pixels and one unlabelled pixel with extreme logits.
PIXEL_LOGITS = [[2.0, 0.5, -1.0], [20.0, 5.0, 12.0], [300.0, -300.0, 0.0]]
PIXEL_LABELS = [0, 2, IGNORE_INDEX]


def hand_batch():
    logits = torch.tensor(PIXEL_LOGITS).T.reshape(1, 3, 1, 3)
    labels = torch.tensor(PIXEL_LABELS).reshape(1, 1, 3)
    return logits, labels


def softmax(z):
    exps = [math.exp(v - max(z)) for v in z]
    return [e / sum(exps) for e in exps]


def expected_mean(per_pixel):
    """Mean of the closed form over the labelled pixels of the hand batch."""
    values = [per_pixel(z, y) for z, y in zip(PIXEL_LOGITS, PIXEL_LABELS) if y != IGNORE_INDEX]
    return sum(values) / len(values)


def ce(z, y):
    return -math.log(softmax(z)[y])


CLOSED_FORMS = {
    "ce": ce,
    "ls": lambda z, y: -(0.95 * math.log(softmax(z)[y]) + 0.05 / 3 * sum(math.log(s) for s in softmax(z))),
    "fl": lambda z, y: -((1 - softmax(z)[y]) ** 3) * math.log(softmax(z)[y]),
    "ecp": lambda z, y: ce(z, y) - 0.1 * (-sum(s * math.log(s) for s in softmax(z))) / 3,
    "mbls": lambda z, y: ce(z, y) + 0.1 * sum(max(0.0, max(z) - v - 10) for v in z) / 3,
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_baseline_equals_closed_form_with_ignored_pixel_excluded(name):
    logits, labels = hand_batch()
    loss = build_train_loss(name, num_classes=3)
    assert float(loss(logits, labels)) == pytest.approx(expected_mean(CLOSED_FORMS[name]), rel=1e-5)


def test_mbls_margin_term_is_active_only_beyond_margin():
    # second pixel: distances (0, 15, 8) -> only class 1 exceeds the margin 10, by 5.
    logits, labels = hand_batch()
    mbls = build_train_loss("mbls", 3)(logits, labels)
    cross_entropy = build_train_loss("ce", 3)(logits, labels)
    assert float(mbls - cross_entropy) == pytest.approx(0.1 * (5 / 3) / 2, rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "ls", "fl", "ecp", "mbls", "cals_alm", "cals_hr"])
def test_unlabelled_pixels_change_neither_value_nor_gradient(name):
    torch.manual_seed(0)
    logits = (8 * torch.randn(2, 4, 3, 3)).requires_grad_()
    labels = torch.randint(0, 4, (2, 3, 3))
    labels[0, 1, :] = IGNORE_INDEX
    loss = build_train_loss(name, num_classes=4)
    value = loss(logits, labels)
    (gradient,) = torch.autograd.grad(value, logits)
    assert gradient[0, :, 1, :].abs().max() == 0
    altered = logits.detach().clone()
    altered[0, :, 1, :] = torch.tensor([1e4, -1e4, 3e3, 0.0]).view(4, 1)
    assert float(loss(altered, labels)) == pytest.approx(value.item(), rel=1e-6)


def test_mean_is_over_labelled_pixels_of_the_batch_not_per_image():
    logits, labels = hand_batch()
    other_logits = torch.tensor([[0.0], [1.0], [3.0]]).reshape(1, 3, 1, 1).expand(1, 3, 1, 3).clone()
    other_labels = torch.tensor([[[1, IGNORE_INDEX, IGNORE_INDEX]]])
    batch_logits = torch.cat([logits, other_logits])
    batch_labels = torch.cat([labels, other_labels])
    expected = (2 * expected_mean(ce) + ce([0.0, 1.0, 3.0], 1)) / 3
    assert float(CrossEntropy()(batch_logits, batch_labels)) == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_matches_torch_with_ignore_index():
    torch.manual_seed(1)
    logits = torch.randn(3, 5, 4, 4)
    labels = torch.randint(0, 5, (3, 4, 4))
    labels[1, :2] = IGNORE_INDEX
    expected = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(CrossEntropy()(logits, labels), expected)


@pytest.mark.parametrize("name", ["ce", "ls", "fl", "ecp", "mbls", "cals_alm", "cals_hr"])
def test_batch_without_labelled_pixel_gives_zero_and_a_gradient(name):
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    labels = torch.full((1, 2, 2), IGNORE_INDEX)
    value = build_train_loss(name, 3)(logits, labels)
    value.backward()
    assert float(value) == 0 and logits.grad.abs().max() == 0


def test_half_precision_logits_are_computed_in_float32():
    logits, labels = hand_batch()
    value = FocalLoss()(logits.to(torch.bfloat16), labels)
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(expected_mean(CLOSED_FORMS["fl"]), rel=2e-2)


def test_cals_alm_initial_loss_is_cross_entropy_plus_class_mean_phr():
    logits, labels = hand_batch()
    lam, rho, m = 1e-6, 1.0, 10.0

    def phr(z):
        return lam * z + rho * z * z / 2 if lam + rho * z >= 0 else -lam * lam / (2 * rho)

    def closed_form(z, y):
        return ce(z, y) + sum(phr((max(z) - v) / m - 1) for v in z) / 3

    loss = build_train_loss("cals_alm", 3)
    assert float(loss(logits, labels)) == pytest.approx(expected_mean(closed_form), rel=1e-5)


def test_cals_hr_starts_as_mbls():
    logits, labels = hand_batch()
    torch.testing.assert_close(build_train_loss("cals_hr", 3)(logits, labels), build_train_loss("mbls", 3)(logits, labels))


def test_builder_defaults_overrides_and_errors():
    assert build_train_loss("ls", 21).smoothing == 0.05
    assert build_train_loss("fl", 21).gamma == 3.0
    assert build_train_loss("ecp", 21).weight == 0.1
    mbls = build_train_loss("mbls", 21)
    assert (mbls.margin, mbls.weight) == (10.0, 0.1)
    alm = build_train_loss("cals_alm", 21, margin=6).multipliers
    assert alm.margin == 6.0 and alm.penalty_update_period == 10
    assert torch.all(alm.multipliers == 1e-6) and torch.all(alm.penalty_parameters == 1.0)
    assert isinstance(build_train_loss("cals_hr", 21), ClassAdaptiveLabelSmoothing)
    for loss_class in (CrossEntropy, LabelSmoothing, FocalLoss, ConfidencePenalty, MarginLabelSmoothing):
        assert issubclass(loss_class, TrainLoss)
    with pytest.raises(ValueError):
        build_train_loss("mmce", 21)
    with pytest.raises(TypeError):
        build_train_loss("ls", 21, gamma=2)


def test_stateless_losses_have_noop_hooks():
    logits, labels = hand_batch()
    loss = build_train_loss("mbls", 3)
    before = float(loss(logits, labels))
    loss.accumulate_validation(logits, labels)
    loss.update_multipliers(0)
    loss.load_state_dict(loss.state_dict())
    assert loss.state_dict() == {} and loss.multipliers_history == []
    assert float(loss(logits, labels)) == before


def test_training_step_on_linear_model_reduces_cals_loss():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1)
    images = torch.rand(4, 3, 6, 6)
    labels = torch.randint(0, 4, (4, 6, 6))
    labels[:, 0] = IGNORE_INDEX
    loss = build_train_loss("cals_alm", 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    first = float(loss(model(images), labels))
    for _ in range(20):
        optimizer.zero_grad()
        loss(model(images), labels).backward()
        optimizer.step()
    assert float(loss(model(images), labels)) < first
