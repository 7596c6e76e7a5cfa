"""APGD and PGD on toy segmentation models: known optima, APGD vs PGD, invariants, schedules."""
import importlib

import pytest
import torch
from torch import nn

from robust_seg import IGNORE_INDEX
from robust_seg.attacks.apgd import apgd
from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.pgd import copy_where, paper_step_size, pgd
from robust_seg.attacks.schedules import apgd_checkpoints, radius_schedule, split_budget
from robust_seg.metrics.segmentation import pixel_accuracy

apgd_module = importlib.import_module("robust_seg.attacks.apgd")  # the modules (the package exports the functions)
pgd_module = importlib.import_module("robust_seg.attacks.pgd")
LOGIT_DIFFERENCE = torch.tensor([2.0, -3.0, 1.0])  # w_0 - w_1 of the per-pixel linear model


def linear_pixel_model(bias_difference: float = -0.4) -> nn.Module:
    """Per-pixel linear 2-class model: u_0 - u_1 = <d, x_a> + bias_difference at every pixel a."""
    model = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[0, :, 0, 0] = LOGIT_DIFFERENCE
        model.bias.copy_(torch.tensor([bias_difference, 0.0]))
    return model.eval()


def small_conv_model(seed: int = 0, classes: int = 4, width: int = 16, gain: float = 3.0) -> nn.Module:
    """A small nonlinear conv segmentation model (random weights scaled up to make it less linear)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, classes, 3, padding=1),
    )
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.mul_(gain)
    return model.eval()


def images_with_box_edges(batch=3, size=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=generator)
    images[:, :, 0, :] = 0.0  # pixels on the box boundary: the projection must clip there
    images[:, :, 1, :] = 1.0
    return images


def linear_worst_case(images, labels, radius, towards_class_one):
    """Closed-form optimum: every pixel at x -/+ radius sign(d), clipped to [0, 1].

    Pixels are independent and the margin u_0 - u_1 is linear, so the loss of each pixel is
    maximised at the corner of its box that minimises (label 0) or maximises (label 1) the margin.
    """
    direction = torch.where(towards_class_one, 1.0, -1.0).unsqueeze(1) * LOGIT_DIFFERENCE.sign().reshape(1, 3, 1, 1)
    return (images - radius * direction).clamp(0.0, 1.0)


def test_schedules_and_checkpoints():
    assert radius_schedule(0.1, 300, "red") == [(0.2, 90), (pytest.approx(0.15), 90), (0.1, 120)]
    assert radius_schedule(0.1, 10, "red") == [(0.2, 3), (pytest.approx(0.15), 3), (0.1, 4)]
    assert radius_schedule(0.1, 300, "const") == [(0.1, 300)]
    # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (increments 0.19, 0.16, 0.13, 0.10, 0.07, 0.06, 0.06)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert split_budget(300, 3) == [100, 100, 100] and split_budget(10, 3) == [4, 3, 3]
    with pytest.raises(ValueError):
        radius_schedule(0.1, 10, "cosine")


def test_paper_step_sizes():
    assert paper_step_size(8 / 255) == 5e-3
    assert paper_step_size(4 / 255) == 4e-3  # App. B.1 (the reference table's 3e-3 loses)
    assert paper_step_size(0.25 / 255) == 8e-4
    assert paper_step_size(16 / 255, iterations=100) == 1e-2
    # the rule elsewhere: the 300-iteration table interpolated in the radius, scaled by 300 / iterations, <= eps
    assert paper_step_size(3 / 255) == pytest.approx(2e-3 + (4e-3 - 2e-3) / 2)
    assert paper_step_size(10 / 255) == pytest.approx(5.5e-3)
    assert paper_step_size(8 / 255, iterations=600) == pytest.approx(2.5e-3)
    assert paper_step_size(8 / 255, iterations=6) == pytest.approx(8 / 255)  # 0.25 capped at eps
    assert paper_step_size(32 / 255, iterations=300) == 6e-3


@pytest.mark.parametrize("schedule", ["const", "red"])
def test_apgd_finds_linear_optimum(schedule):
    model = linear_pixel_model()
    images = images_with_box_edges()
    eps = 8 / 255
    labels = model(images).argmax(1)
    labels[:, 5, :] = IGNORE_INDEX
    result = apgd(model, images, labels, eps=eps, loss="ce", iterations=20, schedule=schedule,
                  generator=torch.Generator().manual_seed(0))
    optimum = linear_worst_case(images, labels, eps, towards_class_one=labels == 0)
    optimum[:, :, 5, :] = result.adv_images[:, :, 5, :]  # ignored pixels: any value is optimal
    torch.testing.assert_close(result.adv_images, optimum, atol=1e-6, rtol=0)
    optimal_accuracy = pixel_accuracy(model(optimum).argmax(1), labels)
    torch.testing.assert_close(result.accuracy, 100 * optimal_accuracy)
    assert (optimal_accuracy < pixel_accuracy(labels, labels)).all()  # the problem is not trivial
    torch.testing.assert_close(result.predictions, model(result.adv_images).argmax(1))


def test_red_eps_returns_final_radius_iterates_only():
    """The 2 eps stage flips more pixels than any point of the eps-ball can; those are no valid answer."""
    model = linear_pixel_model()
    images = images_with_box_edges()
    eps = 4 / 255
    labels = model(images).argmax(1)
    result = apgd(model, images, labels, eps=eps, loss="ce", iterations=30, schedule="red",
                  generator=torch.Generator().manual_seed(0))
    at_eps = pixel_accuracy(model(linear_worst_case(images, labels, eps, labels == 0)).argmax(1), labels)
    at_2eps = pixel_accuracy(model(linear_worst_case(images, labels, 2 * eps, labels == 0)).argmax(1), labels)
    assert (at_2eps < at_eps).all()
    torch.testing.assert_close(result.accuracy, 100 * at_eps)
    assert float((result.adv_images - images).abs().max()) <= eps + 1e-6


@pytest.mark.parametrize("loss", ["js", "ce"])
def test_targeted_apgd_reaches_linear_optimum(loss):
    model = linear_pixel_model()
    images = images_with_box_edges()
    eps = 8 / 255
    labels = model(images).argmax(1)
    target = torch.ones_like(labels)
    result = apgd(model, images, labels, eps=eps, loss=loss, iterations=10, schedule="const",
                  targeted=True, target_labels=target, generator=torch.Generator().manual_seed(0))
    optimum = linear_worst_case(images, labels, eps, towards_class_one=torch.ones_like(labels, dtype=torch.bool))
    torch.testing.assert_close(result.adv_images, optimum, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.extras["target_agreement"], pixel_accuracy(model(optimum).argmax(1), target))
    with pytest.raises(ValueError):
        apgd(model, images, labels, eps=eps, loss="mask_ce", iterations=2, targeted=True, target_labels=target)


def test_pgd_finds_linear_optimum():
    model = linear_pixel_model()
    images = images_with_box_edges()
    eps = 6 / 255
    labels = model(images).argmax(1)
    result = pgd(model, images, labels, eps=eps, loss="ce", iterations=5, step_size=eps / 3)
    optimum = linear_worst_case(images, labels, eps, towards_class_one=labels == 0)
    torch.testing.assert_close(result.adv_images, optimum, atol=1e-6, rtol=0)
    assert result.extras["forwards"][0] == 6 and result.extras["backwards"][0] == 5


def test_apgd_beats_pgd_at_equal_iterations():
    model = small_conv_model()
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = model(images).argmax(1)
    eps, iterations = 16 / 255, 30
    apgd_accuracy = apgd(model, images, labels, eps=eps, loss="ce", iterations=iterations, schedule="const",
                         generator=torch.Generator().manual_seed(1)).accuracy.mean()
    for step_size in [eps / 20, eps / 10, eps / 4, eps / 2, eps]:
        pgd_accuracy = pgd(model, images, labels, eps=eps, loss="ce", iterations=iterations, step_size=step_size).accuracy.mean()
        assert apgd_accuracy < pgd_accuracy - 0.5, step_size  # percentage points


def sweep_cases():
    for eps in [0.0, 1 / 255, 8 / 255, 64 / 255]:
        for schedule in ["const", "red"]:
            for targeted in [False, True]:
                yield eps, schedule, targeted


@pytest.mark.parametrize("eps,schedule,targeted", list(sweep_cases()))
def test_apgd_threat_model_invariants(eps, schedule, targeted):
    model = small_conv_model(width=8)
    images = images_with_box_edges(batch=2, size=10)
    labels = model(images).argmax(1)
    target = torch.zeros_like(labels)
    result = apgd(model, images, labels, eps=eps, loss="js" if targeted else "mask_ce", iterations=8, schedule=schedule,
                  restarts=2 if schedule == "const" else 1, targeted=targeted, target_labels=target,
                  generator=torch.Generator().manual_seed(0))
    check_linf_box(result.adv_images, images, eps)
    assert float((result.adv_images - images).abs().max()) <= eps + 1e-6
    assert result.adv_images.min() >= 0 and result.adv_images.max() <= 1
    torch.testing.assert_close(result.predictions, model(result.adv_images).argmax(1))
    torch.testing.assert_close(result.accuracy, 100 * pixel_accuracy(result.predictions, labels))
    if eps == 0:
        assert torch.equal(result.adv_images, images) and result.extras["forwards"][0] == 1


@pytest.mark.parametrize("eps", [0.0, 2 / 255, 64 / 255])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_threat_model_invariants(eps, random_start):
    model = small_conv_model(width=8)
    images = images_with_box_edges(batch=2, size=10)
    labels = model(images).argmax(1)
    result = pgd(model, images, labels, eps=eps, loss="bal_ce", iterations=6, step_size=max(eps, 1e-3) / 2,
                 random_start=random_start, generator=torch.Generator().manual_seed(0))
    check_linf_box(result.adv_images, images, eps)
    assert float((result.adv_images - images).abs().max()) <= eps + 1e-6
    torch.testing.assert_close(result.predictions, model(result.adv_images).argmax(1))


def test_attacks_leave_model_untouched_and_count_passes():
    model = small_conv_model(width=8)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    images = images_with_box_edges(batch=2, size=10)
    labels = model(images).argmax(1)
    result = apgd(model, images, labels, eps=4 / 255, loss="bal_ce", iterations=10, schedule="red")
    assert not model.training
    assert all(parameter.grad is None for parameter in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # red-eps with 10 iterations: stages of 3, 3, 4 steps; each stage one forward-only final iterate.
    assert result.extras["forwards"].tolist() == [13, 13] and result.extras["backwards"].tolist() == [10, 10]


def test_in_place_record_updates_equal_torch_where_and_leave_the_inputs_alone(monkeypatch):
    """On the CPU the attacks update their per-image records in place (``copy_where``); the results must be those
    of ``torch.where`` (the other devices' path), and neither the caller's images nor the labels may change."""
    target, source = torch.zeros(4, 2, 3, 3), torch.ones(4, 2, 3, 3)
    better = torch.tensor([True, False, True, False])
    expected = torch.where(better.view(-1, 1, 1, 1), source, target)
    assert copy_where(better, source, target) is target and torch.equal(target, expected)
    assert torch.equal(source, torch.ones(4, 2, 3, 3))

    model = small_conv_model(width=8)
    images = torch.rand(3, 3, 10, 10, generator=torch.Generator().manual_seed(4))
    labels = model(images).argmax(1)
    kept = images.clone(), labels.clone()
    runs = {"apgd": lambda: apgd(model, images, labels, eps=8 / 255, loss="mask_ce", iterations=12, image_seeds=[1, 2, 3]),
            "pgd": lambda: pgd(model, images, labels, eps=8 / 255, loss="ce", iterations=6, random_start=True,
                               image_seeds=[1, 2, 3])}
    in_place = {name: run() for name, run in runs.items()}
    assert torch.equal(images, kept[0]) and torch.equal(labels, kept[1])
    with monkeypatch.context() as patch:
        patch.setattr(pgd_module, "copy_where", pgd_module.where_per_image)
        patch.setattr(apgd_module, "copy_where", pgd_module.copy_where)
        rewritten = {name: run() for name, run in runs.items()}
    for name in runs:
        assert torch.equal(in_place[name].adv_images, rewritten[name].adv_images), name
        assert torch.equal(in_place[name].accuracy, rewritten[name].accuracy), name
        assert torch.equal(in_place[name].extras["loss"], rewritten[name].extras["loss"]), name


def test_apgd_is_reproducible_and_independent_of_batch_composition():
    model = small_conv_model(width=8)
    images = torch.rand(4, 3, 10, 10, generator=torch.Generator().manual_seed(3))
    labels = model(images).argmax(1)
    seeds = [11, 22, 33, 44]
    full = apgd(model, images, labels, eps=8 / 255, loss="mask_sph", iterations=12, image_seeds=seeds)
    part = apgd(model, images[[1, 3]], labels[[1, 3]], eps=8 / 255, loss="mask_sph", iterations=12, image_seeds=[22, 44])
    assert torch.equal(full.adv_images[[1, 3]], part.adv_images)
    assert torch.equal(full.accuracy[[1, 3]], part.accuracy)
    again = apgd(model, images, labels, eps=8 / 255, loss="mask_sph", iterations=12, generator=torch.Generator().manual_seed(5))
    again2 = apgd(model, images, labels, eps=8 / 255, loss="mask_sph", iterations=12, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again.adv_images, again2.adv_images)


def test_masked_loss_drives_the_gradient_but_apgd_tracks_the_unmasked_objective():
    """App. B.1: the mask enters only the gradient; the step-size rule sees the unmasked loss."""
    from robust_seg.attacks.losses import LOSSES, cross_entropy, per_image_mean
    from robust_seg.attacks.pgd import AttackObjective

    model = small_conv_model(width=8)
    images = images_with_box_edges(batch=2, size=10)
    labels = model(images).argmax(1)
    labels[:, :3] = (labels[:, :3] + 1) % 4  # some misclassified pixels: the mask matters
    labels[:, 5] = IGNORE_INDEX
    evaluation = AttackObjective(model, labels, "mask_ce", total_steps=1)(images, 1)
    points = images.clone().requires_grad_(True)
    logits = model(points)
    torch.testing.assert_close(evaluation.objective, per_image_mean(cross_entropy(logits, labels), labels))
    (expected_gradient,) = torch.autograd.grad(LOSSES["mask_ce"](logits, labels).sum(), points)
    torch.testing.assert_close(evaluation.gradient, expected_gradient)
    torch.testing.assert_close(evaluation.score, pixel_accuracy(logits.argmax(1), labels))
