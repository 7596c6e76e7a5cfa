"""Every attack config of configs/attack, over a sweep of radii: ||x_adv - x||_inf <= eps and x_adv in [0, 1]."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from robust_seg.attacks.config import AttackConfig
from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.registry import resolve_attack
from robust_seg.data import build_dataset
from robust_seg.models.embedded import load_embedded_model
from robust_seg.names import ROOT

CONFIGS = sorted((ROOT / "configs" / "attack").glob("*.yaml"))
RADII = [0.0, 0.5 / 255, 4 / 255, 16 / 255]
SMALL_BUDGET = {"iterations": 4, "steps": 2, "queries": 20}  # keeps every config's structure, shrinks its loops


@pytest.fixture(scope="module")
def setting():
    model = load_embedded_model()
    dataset = build_dataset(OmegaConf.load(ROOT / "configs/dataset/synthetic.yaml"), split="val", train=False)
    items = [dataset[i] for i in range(2)]
    return model, torch.stack([i["image"] for i in items]), torch.stack([i["label"] for i in items])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_attack_config_stays_in_the_threat_model(setting, path: Path):
    model, images, labels = setting
    cfg = OmegaConf.merge(OmegaConf.structured(AttackConfig), OmegaConf.load(path))
    for key, value in SMALL_BUDGET.items():
        if key in cfg.options:
            cfg.options[key] = value
    attack = resolve_attack(cfg)
    if attack.corruption:  # common corruptions are no perturbation of bounded norm: images in [0, 1] only
        for index, (run, _) in enumerate(attack.runs([])[::25]):
            result = attack.run(model, images, labels, eps=run, seed=(0, index), image_indices=[0, 1])
            assert 0 <= float(result.adv_images.min()) and float(result.adv_images.max()) <= 1
        return
    for index, eps in enumerate([None] if attack.minimal_norm else RADII):
        result = attack.run(model, images, labels, eps=eps, seed=(0, index))
        for outcome in (result, *result.components.values()):
            assert 0 <= float(outcome.adv_images.min()) and float(outcome.adv_images.max()) <= 1
            bound = outcome.extras["norm"] if eps is None else eps
            check_linf_box(outcome.adv_images, images, bound)
            if eps == 0:
                assert torch.equal(outcome.adv_images, images)
