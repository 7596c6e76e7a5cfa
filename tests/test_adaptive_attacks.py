"""Adaptive attacks against input-transform defenses (robust_seg/models/defenses.py; Athalye et al. 2018): a defense
that fools the plain attack is broken by BPDA (non-differentiable transform) or EOT (randomized transform), through
the evaluation driver with its diagnostics. Sizes: the shipped model, 4 synthetic images, SEA at 8/255 with 3
iterations per loss (BPDA) and 5 (EOT); the numbers are recorded in docs/diagnostics.md."""
from __future__ import annotations

import pytest
import torch

import robust_seg as rs
from robust_seg.errors import ConfigError
from robust_seg.models.defenses import DefendedModel, adaptive, build_transform, defend

QUANTIZE = "model.input_transforms=[{name:quantize,bits:4}]"
NOISE = "model.input_transforms=[{name:gaussian_noise,std:0.1}]"
BASE = ["max_images=4", "batch_size=4", "dataset.synthetic.num_val=4"]


def _sea(tmp_path, name, *overrides, iterations=10, **options):
    results = rs.evaluate(None, attack="sea", eps=["8/255"], iterations=iterations, run_dir=tmp_path / name,
                          overrides=[*BASE, *overrides], **options)
    return results["radii"]["8/255"]["worst_case"]["acc"], results


def test_bpda_breaks_input_quantisation(tmp_path):
    undefended, _ = _sea(tmp_path, "undefended", "diagnostics=false", iterations=3)  # the reference number only
    plain, plain_results = _sea(tmp_path, "plain", QUANTIZE, iterations=3)
    bpda, bpda_results = _sea(tmp_path, "bpda", QUANTIZE, bpda=True, iterations=3)
    print(f"SEA ACC at 8/255: undefended {undefended:.1f}, 4-bit quantised {plain:.1f}, with BPDA {bpda:.1f}")
    assert plain >= bpda + 10  # the plain attack overstates the defense's robustness
    assert bpda <= undefended + 5  # BPDA brings it back to the undefended model's
    flagged = plain_results["diagnostics"]["checks"]["unavailable_gradients"]
    assert flagged["status"] == "flag" and "attack.options.bpda=true" in flagged["detail"]
    assert plain_results["provenance"]["model"]["input_transforms"] == "quantize(4 bits)"
    assert bpda_results["diagnostics"]["checks"]["randomized_model"]["status"] == "ok"


def test_eot_is_at_least_as_strong_on_a_randomized_model_and_the_model_is_detected(tmp_path):
    plain, plain_results = _sea(tmp_path, "plain", NOISE, iterations=5)
    eot, eot_results = _sea(tmp_path, "eot", NOISE, iterations=5, eot_samples=4)
    print(f"SEA ACC at 8/255 with Gaussian noise (std 0.1): plain {plain:.1f}, EOT (4 draws) {eot:.1f}")
    assert eot <= plain
    randomized = plain_results["diagnostics"]["checks"]["randomized_model"]
    assert randomized["status"] == "flag" and "eot_samples" in randomized["detail"]
    assert "attacked with EOT over 4 draws" in eot_results["diagnostics"]["checks"]["randomized_model"]["detail"]
    assert plain_results["provenance"]["model"]["randomized"] is True
    assert plain_results["provenance"]["model"]["accuracy_draws"] == 1  # R, the fresh draws behind each image's ACC


def test_bpda_gradient_is_the_identity_and_draws_are_seeded_per_image():
    torch.manual_seed(0)
    network = torch.nn.Conv2d(3, 2, 1)
    quantised = defend(network, [{"name": "quantize", "bits": 2}])
    images = torch.rand(2, 3, 4, 4, requires_grad=True)
    (plain,) = torch.autograd.grad(quantised(images).sum(), images, allow_unused=True, materialize_grads=True)
    assert plain.abs().max() == 0  # rounding: no gradient
    with adaptive(quantised, bpda=True):
        (through,) = torch.autograd.grad(quantised(images).sum(), images)
    (identity,) = torch.autograd.grad(network(images).sum(), images)
    torch.testing.assert_close(through, identity)  # BPDA: the backward pass of the identity
    with torch.no_grad():  # the forward value is still the quantised one
        torch.testing.assert_close(quantised(images), network(torch.round(images * 3) / 3))
    noisy = defend(network, [{"name": "gaussian_noise", "std": 0.1}])
    with adaptive(noisy, image_seeds=[5, 9]):
        pair = noisy(images.detach())
    fresh = defend(network, [{"name": "gaussian_noise", "std": 0.1}])
    with adaptive(fresh, image_seeds=[9]):
        alone = fresh(images.detach()[1:])
    torch.testing.assert_close(pair[1:], alone)  # image 1's draw depends on its seed, not on its batch


def coarse_sign(levels: int = 2):
    """A user's own non-differentiable transform with a declared BPDA approximation (the target mechanism)."""
    def transform(images, generators):
        return torch.round(images * levels) / levels
    transform.differentiable = False
    transform.approximation = lambda images: 0.5 * images
    return transform


def test_a_users_transform_and_its_declared_approximation():
    network = torch.nn.Conv2d(3, 2, 1)
    defended = defend(network, [{"target": "tests.test_adaptive_attacks.coarse_sign", "levels": 4}])
    images = torch.rand(2, 3, 4, 4, requires_grad=True)
    with adaptive(defended, bpda=True):
        (through,) = torch.autograd.grad(defended(images).sum(), images)
    (identity,) = torch.autograd.grad(network(images).sum(), images)
    torch.testing.assert_close(through, 0.5 * identity)  # the declared approximation's backward, not the identity
    with torch.no_grad():
        torch.testing.assert_close(defended(images), network(torch.round(images * 4) / 4))


def test_transform_configs_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="unknown transform 'blur'"):
        build_transform({"name": "blur"})
    with pytest.raises(ConfigError, match="bits=12 must be in 1..8"):
        build_transform({"name": "quantize", "bits": 12})
    jpeg = build_transform({"name": "jpeg", "quality": 50})
    images = torch.rand(1, 3, 16, 16)
    assert (jpeg(images, [torch.Generator()]) - images).abs().max() > 0 and not jpeg.differentiable
    with pytest.raises(ConfigError, match="eot_samples: EOT is implemented for"):
        rs.evaluate(None, attack="alma_prox", eps=["8/255"], eot_samples=4, run_dir=tmp_path / "x", overrides=BASE)
    with pytest.raises(ConfigError, match="square takes no gradient"):
        rs.evaluate(None, attack="square", eps=["8/255"], bpda=True, run_dir=tmp_path / "y", overrides=BASE)
    assert isinstance(defend(torch.nn.Identity(), [{"name": "quantize"}]), DefendedModel)
