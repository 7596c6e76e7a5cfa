"""SEA: worst case over losses, skipping solved images without changing the result, invariants."""
import pytest
import torch
from torch import nn

from robust_seg import IGNORE_INDEX
from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.sea import ALL_LOSSES, SEA_LOSSES, sea
from robust_seg.metrics.segmentation import pixel_accuracy


def small_conv_model(seed: int = 0, classes: int = 4, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, classes, 3, padding=1),
    )
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.mul_(3.0)
    return model.eval()


def batch_with_easy_and_hard_images(model, size=10):
    """Images 0, 2: labels = clean prediction (hard); 1, 3: labels = a class never predicted... almost (easy)."""
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model(images)
    labels = logits.argmax(1)
    labels[1] = logits[1].argmin(0)  # accuracy 0 already: solved by the first run
    labels[3] = torch.where(torch.arange(size).reshape(1, size) < 2, labels[3], logits[3].argmin(0))
    labels[0, 0, :3] = IGNORE_INDEX
    return images, labels


@pytest.mark.parametrize("eps", [4 / 255, 16 / 255])
def test_skipping_solved_images_does_not_change_the_result(eps):
    model = small_conv_model()
    images, labels = batch_with_easy_and_hard_images(model)
    with_skip = sea(model, images, labels, eps=eps, iterations=10, skip_solved=True, generator=torch.Generator().manual_seed(0))
    without = sea(model, images, labels, eps=eps, iterations=10, skip_solved=False, generator=torch.Generator().manual_seed(0))
    skipped = torch.stack([with_skip.components[name].extras["skipped"] for name in SEA_LOSSES])
    assert skipped.any(), "the test batch must exercise skipping"
    assert not skipped[0].any()
    assert torch.equal(with_skip.adv_images, without.adv_images)
    assert torch.equal(with_skip.predictions, without.predictions)
    assert torch.equal(with_skip.accuracy, without.accuracy)
    assert torch.equal(with_skip.extras["worst_component"], without.extras["worst_component"])
    assert (with_skip.extras["forwards"] <= without.extras["forwards"]).all()
    assert with_skip.extras["forwards"].sum() < without.extras["forwards"].sum()
    for index, name in enumerate(SEA_LOSSES):
        ran = ~skipped[index]
        component, full = with_skip.components[name], without.components[name]
        assert torch.equal(component.adv_images[ran], full.adv_images[ran])
        assert torch.equal(component.accuracy[ran], full.accuracy[ran])
        assert (component.accuracy[~ran] == 0).all()
        assert torch.isnan(component.extras["loss"][~ran]).all()
        assert (component.extras["forwards"][~ran] == 0).all()


def test_sea_is_the_per_image_worst_case_of_its_components():
    model = small_conv_model(seed=1)
    images, labels = batch_with_easy_and_hard_images(model)
    result = sea(model, images, labels, eps=8 / 255, iterations=10, generator=torch.Generator().manual_seed(1))
    accuracies = torch.stack([result.components[name].accuracy for name in SEA_LOSSES])
    assert (result.accuracy <= accuracies).all()
    torch.testing.assert_close(result.accuracy, accuracies.min(0).values)
    chosen = accuracies.argmin(0)  # first minimum: ties keep the earlier loss
    assert torch.equal(result.extras["worst_component"], chosen)
    for image, index in enumerate(chosen.tolist()):
        assert torch.equal(result.adv_images[image], result.components[SEA_LOSSES[index]].adv_images[image])
    torch.testing.assert_close(result.predictions, model(result.adv_images).argmax(1))
    torch.testing.assert_close(result.accuracy, 100 * pixel_accuracy(result.predictions, labels))


@pytest.mark.parametrize("eps", [0.0, 2 / 255, 64 / 255])
def test_sea_threat_model_invariants(eps):
    model = small_conv_model(seed=2)
    images, labels = batch_with_easy_and_hard_images(model)
    images[:, :, 0] = 0.0
    images[:, :, -1] = 1.0
    result = sea(model, images, labels, eps=eps, iterations=4, generator=torch.Generator().manual_seed(2))
    check_linf_box(result.adv_images, images, eps)
    assert float((result.adv_images - images).abs().max()) <= eps + 1e-6
    for component in result.components.values():
        check_linf_box(component.adv_images, images, eps)


def test_six_loss_variant_and_reproducibility():
    model = small_conv_model(seed=3)
    images, labels = batch_with_easy_and_hard_images(model)
    first = sea(model, images, labels, eps=8 / 255, losses=ALL_LOSSES, iterations=4, schedule="const",
                generator=torch.Generator().manual_seed(3))
    assert tuple(first.components) == ALL_LOSSES
    second = sea(model, images, labels, eps=8 / 255, losses=ALL_LOSSES, iterations=4, schedule="const",
                 generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.adv_images, second.adv_images)
    with pytest.raises(ValueError):
        sea(model, images, labels, eps=8 / 255, losses=("js", "js"), iterations=2)


def test_all_images_solved_by_the_first_run_skips_every_later_run():
    model = small_conv_model(seed=4)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        labels = model(images).argmin(1)  # clean accuracy 0
    result = sea(model, images, labels, eps=4 / 255, iterations=4, generator=torch.Generator().manual_seed(4))
    for name in SEA_LOSSES[1:]:
        assert result.components[name].extras["skipped"].all()
        assert (result.components[name].extras["backwards"] == 0).all()
    assert torch.equal(result.adv_images, result.components[SEA_LOSSES[0]].adv_images)
    assert (result.accuracy == 0).all() and (result.extras["worst_component"] == 0).all()
