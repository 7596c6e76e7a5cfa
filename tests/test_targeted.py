"""Targeted attacks configured by ``attack.target``: target maps, registry plumbing, attacks reaching the target."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from robust_seg import IGNORE_INDEX
from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.registry import resolve_attack
from robust_seg.attacks.targets import (_box_sums, majority_label_map, parse_target, read_label_map,
                                        smooth_label_map, write_label_map, write_majority_target)
from robust_seg.errors import ConfigError
from robust_seg.metrics.apsr import apsr
from robust_seg.metrics.segmentation import pixel_accuracy
from tests.conftest import compose_config


class ThreeWayLinear(nn.Module):
    """Per-pixel linear model around x = 1/2: z0 = 0, z1 = 10 (x_r - 1/2) - 0.2, z2 = 10 (x_g - 1/2) - 0.4, z3 = -100.

    Unperturbed pixels are class 0; the nearest other class is 1 (Linf distance ~0.02), class 2 needs ~0.04
    on the green channel, so a targeted attack towards 2 must find a different, larger perturbation.
    """

    num_classes = 4

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0] = 10.0
            self.conv.weight[2, 1] = 10.0
            self.conv.bias.copy_(torch.tensor([0.0, -5.2, -5.4, -100.0]))
        self.requires_grad_(False)

    def forward(self, x):
        return self.conv(x)


def toy_batch():
    generator = torch.Generator().manual_seed(0)
    images = 0.5 + 0.005 * (2 * torch.rand(2, 3, 10, 12, generator=generator) - 1)
    labels = torch.zeros(2, 10, 12, dtype=torch.long)
    labels[:, 0, :4] = IGNORE_INDEX
    return ThreeWayLinear().eval(), images, labels


def attack_cfg(name, target, **options):
    return OmegaConf.create({"name": name, "eps": [0], "options": options, "seed": 0, "target": target, "note": None})


def test_alma_prox_from_config_reaches_a_class_target():
    model, images, labels = toy_batch()
    attack = resolve_attack(attack_cfg("alma_prox", {"kind": "class", "class_index": 2}, iterations=200))
    assert attack.description == "alma_prox(iterations=200, target=class:2)"
    result = attack.run(model, images, labels, eps=None)
    valid = labels != IGNORE_INDEX
    assert (result.extras["apsr"] >= 0.99).all() and result.extras["success"].all()
    assert ((result.predictions == 2) | ~valid).flatten(1).float().mean(1).min() >= 0.99
    assert torch.equal(result.accuracy, 100 * pixel_accuracy(result.predictions, labels))  # ACC: ground truth
    check_linf_box(result.adv_images, images, result.extras["norm"])
    assert torch.equal(result.predictions, model(result.adv_images).argmax(1))
    untargeted = resolve_attack(attack_cfg("alma_prox", None, iterations=200)).run(model, images, labels, eps=None)
    assert (untargeted.predictions[valid] == 1).float().mean() > 0.9  # the untargeted optimum is class 1
    assert (result.extras["norm"] > untargeted.extras["norm"] + 0.01).all()
    assert (result.extras["norm"] < 0.06).all()  # ~0.04 + the pixels' offsets


def test_apgd_js_from_config_reaches_a_target_map(tmp_path):
    model, images, labels = toy_batch()
    target = torch.full((5, 6), 2, dtype=torch.long)  # half the image's size: nearest upsampling
    target[:, :3] = 1
    target[0, 0] = IGNORE_INDEX
    write_label_map(target, tmp_path / "target.png")
    attack = resolve_attack(attack_cfg("apgd", {"kind": "map", "path": str(tmp_path / "target.png")}, loss="js",
                                       iterations=30, schedule="const"))
    result = attack.run(model, images, labels, eps=0.08)
    expected = target.repeat_interleave(2, 0).repeat_interleave(2, 1).expand(2, -1, -1)
    attacked = (labels != IGNORE_INDEX) & (expected != IGNORE_INDEX)
    assert (result.predictions[attacked] == expected[attacked]).float().mean() >= 0.99
    assert torch.allclose(result.extras["apsr"], apsr(result.predictions, labels, expected))
    assert (result.extras["apsr"] >= 0.99).all()
    assert torch.equal(result.accuracy, 100 * pixel_accuracy(result.predictions, labels))
    assert (result.accuracy == 0).all()
    check_linf_box(result.adv_images, images, 0.08)
    clean = attack.run(model, images, labels, eps=0)  # radius 0: clean, APSR still w.r.t. the target
    assert (clean.accuracy == 100).all() and (clean.extras["apsr"] == 0).all()


def test_target_labels_are_built_per_batch_deterministically(tmp_path):
    labels = torch.zeros(3, 4, 6, dtype=torch.long)
    assert torch.equal(parse_target({"kind": "class", "class_index": 0}).labels_for(labels), labels)
    write_label_map(torch.arange(24).reshape(4, 6) % 5, tmp_path / "t.png")
    spec = parse_target(OmegaConf.create({"kind": "map", "path": str(tmp_path / "t.png")}))
    first, second = spec.labels_for(labels), spec.labels_for(labels)
    assert torch.equal(first, second) and first.shape == (3, 4, 6)
    assert torch.equal(first[2], torch.arange(24).reshape(4, 6) % 5)
    with pytest.raises(ConfigError, match="outside 0..3"):
        spec.labels_for(labels, num_classes=4)
    with pytest.raises(ConfigError, match="not a class"):
        parse_target({"kind": "class", "class_index": 4}).labels_for(labels, num_classes=4)


@pytest.mark.parametrize("target, message", [
    (5, "must be null or a mapping"),
    ({"kind": "pixel"}, "choose from class, map"),
    ({"kind": "class"}, "takes exactly 'class_index'"),
    ({"kind": "class", "class_index": 0, "path": "x"}, "unknown: path"),
    ({"kind": "class", "class_index": -1}, "class index >= 0"),
    ({"kind": "map", "path": "/nonexistent/target.png"}, "no target map"),
])
def test_malformed_targets_fail_in_one_line(target, message):
    with pytest.raises(ConfigError, match=message):
        parse_target(target)


def test_registry_rejects_untargetable_attacks_and_reserved_options():
    with pytest.raises(ConfigError, match="sea has no targeted mode.*alma_prox"):
        resolve_attack(attack_cfg("sea", {"kind": "class", "class_index": 0}))
    with pytest.raises(ConfigError, match="attack.options.targeted"):
        resolve_attack(attack_cfg("alma_prox", None, targeted=True))


def test_hydra_override_sets_the_target():
    cfg = compose_config("evaluate", ["attack=alma_prox", "attack.target={kind:class,class_index:0}"])
    assert resolve_attack(cfg.attack).target.class_index == 0
    assert resolve_attack(compose_config("evaluate", ["attack=alma_prox"]).attack).target is None


def test_majority_label_map_closed_form():
    a = torch.tensor([[0, 1], [2, IGNORE_INDEX]])
    b = torch.tensor([[0, 2], [2, IGNORE_INDEX]])
    c = torch.tensor([[1, 2], [IGNORE_INDEX, IGNORE_INDEX]])
    majority = majority_label_map([torch.stack([a, b]), c], num_classes=3)
    assert torch.equal(majority, torch.tensor([[0, 2], [2, IGNORE_INDEX]]))
    assert torch.equal(majority_label_map([a, c], 3), torch.tensor([[0, 1], [2, IGNORE_INDEX]]))  # ties: lowest
    assert torch.equal(majority_label_map([c, c, a], 3)[1], torch.tensor([IGNORE_INDEX, IGNORE_INDEX]))


def test_box_sums_match_brute_force_and_mode_filter_removes_speckles():
    values = torch.rand(2, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    brute = torch.zeros_like(values)
    for i in range(7):
        for j in range(9):
            brute[:, i, j] = values[:, max(i - 2, 0):i + 3, max(j - 2, 0):j + 3].sum((1, 2))
    assert torch.allclose(_box_sums(values, 5), brute)
    label_map = torch.zeros(9, 9, dtype=torch.long)
    label_map[:, 5:] = 1
    noisy = label_map.clone()
    noisy[2, 2], noisy[6, 7], noisy[4, 1] = 1, 0, IGNORE_INDEX
    assert torch.equal(smooth_label_map(noisy, 2, 3), label_map)
    unlabelled = torch.full((5, 5), IGNORE_INDEX)
    assert torch.equal(smooth_label_map(unlabelled, 2, 3), unlabelled)
    with pytest.raises(ValueError, match="odd"):
        smooth_label_map(label_map, 2, 4)


def test_write_majority_target_round_trips(tmp_path):
    labels = torch.zeros(4, 6, dtype=torch.long)
    labels[:, 3:] = 1
    dataset = [{"label": labels}, {"label": labels.flip(1)}, {"label": labels}]
    target = write_majority_target(dataset, tmp_path / "m.png", num_classes=2, window=1)
    assert torch.equal(target, labels) and torch.equal(read_label_map(tmp_path / "m.png"), labels)


@pytest.mark.slow
def test_evaluation_driver_runs_a_targeted_minimal_norm_attack(tmp_path):
    """End to end: python -m robust_seg.evaluate with attack.target on the shipped model (about 15 s)."""
    import json

    from tests.conftest import run_entry

    run_entry("evaluate", "experiment=embedded_default", "attack=alma_prox", "attack.options.iterations=20",
              "attack.target={kind:class,class_index:0}", "max_images=2", "batch_size=2", "logger=none",
              "run_name=targeted", cwd=tmp_path, check=True)
    results = json.loads((tmp_path / "outputs" / "evaluate" / "targeted" / "results.json").read_text())
    assert results["attack_config"] == "alma_prox(iterations=20, mu_max=1.0, mu_min=1e-12, nu=0.99, target=class:0)"
    assert results["attack"] == "ALMA prox (20 it., targeted: class:0)"
    per_image = results["minimal_norm"]["per_image"]
    assert len(per_image["apsr"]) == 2 and all(0 < a <= 1 for a in per_image["apsr"])
