"""Closed forms, gradients and safety of the six attack losses (SEA paper Sec. 2.2, App. A)."""
import math

import numpy as np
import pytest
import torch

from robust_seg import IGNORE_INDEX
from robust_seg.attacks.losses import (
    LOSSES,
    bal_ce_lambda,
    balanced_cross_entropy,
    cosine_similarity_cross_entropy,
    cosine_similarity_weight,
    cross_entropy,
    jensen_shannon,
    per_image_mean,
    predicted_classes,
    spherical,
)

# Three pixels, K = 3: correctly classified (y=0), misclassified (y=0, argmax 1), ignored.
PIXEL_LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 1.2, 0.3], [0.7, -0.2, 0.4]])
PIXEL_LABELS = np.array([0, 0, IGNORE_INDEX])


def hand_made():
    logits = torch.tensor(PIXEL_LOGITS, dtype=torch.float64).T.reshape(1, 3, 1, 3)
    labels = torch.tensor(PIXEL_LABELS).reshape(1, 1, 3)
    return logits, labels


def np_softmax(u):
    e = np.exp(u - u.max())
    return e / e.sum()


def np_ce(u, y):
    return -np.log(np_softmax(u)[y])


def np_js(u, y):
    """D_JS(p || e_y) straight from the KL definition, 0 log 0 = 0."""
    p = np_softmax(u)
    q = np.eye(len(u))[y]
    m = (p + q) / 2
    kl = lambda a, b: sum(ai * math.log(ai / bi) for ai, bi in zip(a, b) if ai > 0)  # noqa: E731
    return (kl(p, m) + kl(q, m)) / 2


def np_sigmoid(u):
    return 1 / (1 + np.exp(-u))


def expected(per_pixel):
    """Apply a per-pixel numpy formula to the labelled pixels, 0 at ignored."""
    return np.array([per_pixel(u, y) if y != IGNORE_INDEX else 0.0 for u, y in zip(PIXEL_LOGITS, PIXEL_LABELS)])


CLOSED_FORMS = {
    "ce": lambda u, y: np_ce(u, y),
    "cossim_ce": lambda u, y: np_sigmoid(u[y]) / np.linalg.norm(np_sigmoid(u)) * np_ce(u, y),
    "js": np_js,
    "mask_ce": lambda u, y: float(u.argmax() == y) * np_ce(u, y),
    "mask_sph": lambda u, y: -float(u.argmax() == y) * u[y] / np.linalg.norm(u),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_loss_equals_closed_form(name):
    logits, labels = hand_made()
    value = LOSSES[name](logits, labels, step=1, total_steps=1)
    assert value.shape == (1, 1, 3)
    np.testing.assert_allclose(value.flatten().numpy(), expected(CLOSED_FORMS[name]), rtol=1e-10, atol=1e-12)


def test_hand_values_are_what_the_formulas_say():
    # Independent spot checks of the numpy references on the correctly classified pixel.
    u = PIXEL_LOGITS[0]
    assert np_ce(u, 0) == pytest.approx(-2.0 + math.log(math.exp(2) + math.exp(0.5) + math.exp(-1)))
    p_y = np_softmax(u)[0]
    closed = math.log(2) - 0.5 * (1 + p_y) * math.log(1 + p_y) + 0.5 * p_y * math.log(p_y)
    assert np_js(u, 0) == pytest.approx(closed)


@pytest.mark.parametrize("step,total", [(1, 10), (4, 10), (10, 10)])
def test_bal_ce_weights_follow_lambda(step, total):
    logits, labels = hand_made()
    lam = (step - 1) / (2 * total)
    assert bal_ce_lambda(step, total) == pytest.approx(lam)
    value = balanced_cross_entropy(logits, labels, step=step, total_steps=total).flatten().numpy()
    ce = expected(np_ce)
    np.testing.assert_allclose(value, [(1 - lam) * ce[0], lam * ce[1], 0.0], rtol=1e-10, atol=1e-12)


def test_bal_ce_needs_step():
    logits, labels = hand_made()
    with pytest.raises(ValueError):
        balanced_cross_entropy(logits, labels)
    with pytest.raises(ValueError):
        balanced_cross_entropy(logits, labels, step=11, total_steps=10)


def logit_gradient(loss_fn, logits, labels, **steps):
    logits = logits.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(loss_fn(logits, labels, **steps).sum(), logits)
    return gradient


def test_js_gradient_matches_app_a_and_vanishes_as_p_y_goes_to_zero():
    labels = torch.zeros(1, 1, 1, dtype=torch.int64)
    norms = []
    for shift in [0.0, 5.0, 10.0, 20.0, 40.0]:
        logits = torch.tensor([-shift, 1.0, 0.5], dtype=torch.float64).reshape(1, 3, 1, 1)
        gradient = logit_gradient(jensen_shannon, logits, labels).flatten()
        p = torch.softmax(logits.flatten(), 0)
        # App. A's formula without the factor 1/2 that its own D_JS definition carries (the
        # paper drops it in the derivative): dD_JS/du_t = 1/2 p_y log(p_y / (1 + p_y)) (delta_yt - p_t).
        analytic = 0.5 * p[0] * torch.log(p[0] / (1 + p[0])) * (torch.eye(3)[0].double() - p)
        torch.testing.assert_close(gradient, analytic)
        norms.append(float(gradient.norm()))
    assert all(a > b for a, b in zip(norms, norms[1:]))
    assert norms[-1] < 1e-14


@pytest.mark.parametrize("loss_fn", [LOSSES["mask_ce"], LOSSES["mask_sph"]])
def test_masked_losses_have_zero_gradient_on_misclassified_pixels(loss_fn):
    logits, labels = hand_made()
    gradient = logit_gradient(loss_fn, logits, labels)
    assert gradient[..., 0].abs().sum() > 0  # correct pixel
    assert torch.all(gradient[..., 1:] == 0)  # misclassified and ignored pixels


def test_spherical_gradient_matches_app_a():
    logits, labels = hand_made()
    gradient = logit_gradient(spherical, logits, labels)[0, :, 0, 0]
    u = logits[0, :, 0, 0]
    norm = u.norm()
    analytic = (-torch.eye(3, dtype=torch.float64)[0] + u[0] * u / norm**2) / norm
    torch.testing.assert_close(gradient, analytic)


def test_cossim_weight_is_detached():
    logits, labels = hand_made()
    gradient = logit_gradient(cosine_similarity_cross_entropy, logits, labels)
    weight = cosine_similarity_weight(logits, labels)
    expected_gradient = weight.unsqueeze(1) * logit_gradient(cross_entropy, logits, labels)
    torch.testing.assert_close(gradient, expected_gradient)
    assert not weight.requires_grad


def test_registry_has_the_six_losses_and_masks_only_the_gradient():
    assert set(LOSSES) == {"ce", "bal_ce", "cossim_ce", "js", "mask_ce", "mask_sph"}
    logits, labels = hand_made()
    for name, base in [("mask_ce", cross_entropy), ("mask_sph", spherical)]:
        driving, objective = LOSSES[name].evaluate(logits, labels)
        torch.testing.assert_close(objective, base(logits, labels))
        assert driving[..., 1] == 0 and objective[..., 1] != 0
    for name in ["ce", "cossim_ce", "js"]:
        driving, objective = LOSSES[name].evaluate(logits, labels)
        torch.testing.assert_close(driving, objective)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_ignored_pixels_give_zero_loss_and_gradient(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 3, 3))
    labels[0, 1] = IGNORE_INDEX
    labels[1] = IGNORE_INDEX
    value = LOSSES[name](logits, labels, step=2, total_steps=3)
    assert torch.all(value[labels == IGNORE_INDEX] == 0)
    gradient = logit_gradient(LOSSES[name], logits, labels, step=2, total_steps=3)
    assert torch.all(gradient.permute(0, 2, 3, 1)[labels == IGNORE_INDEX] == 0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_confident_logits_stay_finite(name):
    torch.manual_seed(1)
    logits = (torch.randn(2, 5, 4, 4) * 1e4).float()
    labels = torch.randint(0, 5, (2, 4, 4))
    value = LOSSES[name](logits, labels, step=1, total_steps=2)
    gradient = logit_gradient(LOSSES[name], logits, labels, step=1, total_steps=2)
    assert torch.isfinite(value).all() and torch.isfinite(gradient).all()
    js = jensen_shannon(logits, labels)
    assert (js >= -1e-6).all() and (js <= math.log(2) + 1e-6).all()


def test_per_image_mean_counts_labelled_pixels_only():
    values = torch.tensor([[[1.0, 2.0], [3.0, 0.0]], [[4.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[[0, 1], [1, IGNORE_INDEX]], [[2, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX]]])
    torch.testing.assert_close(per_image_mean(values, labels), torch.tensor([2.0, 4.0]))


def test_cossim_weight_exact_when_all_sigmoids_underflow():
    logits = torch.tensor([-200.0, -201.0, -205.0]).reshape(1, 3, 1, 1)  # sigmoid underflows in float32
    labels = torch.zeros(1, 1, 1, dtype=torch.int64)
    e = np.exp(np.array([0.0, -1.0, -5.0]))  # sigma(u) ~ exp(u) for u << 0
    assert float(cosine_similarity_weight(logits, labels)) == pytest.approx(e[0] / np.linalg.norm(e), rel=1e-5)


@pytest.mark.parametrize("classes", [3, 21, 300])
def test_predicted_classes_equals_argmax_with_first_index_on_ties(classes):
    torch.manual_seed(classes)
    logits = torch.randint(-3, 3, (2, classes, 5, 7)).float()  # many ties
    assert torch.equal(predicted_classes(logits), logits.argmax(1))
    assert predicted_classes(logits).dtype == torch.int64
