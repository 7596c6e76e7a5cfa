"""Adversarial inputs for AT / PIR-AT (SEA paper Sec. 3, App. B.2), made by the project's own PGD."""
from __future__ import annotations

import torch

from robust_seg.radii import parse_radius


def adversarial_examples(model, images: torch.Tensor, labels: torch.Tensor, cfg) -> torch.Tensor:
    """PGD on the CE loss at ``cfg.eps`` with ``cfg.steps`` steps of size ``cfg.step_size``, no random start.

    As the paper's code: the examples are generated with the model in eval mode
    (batch-norm statistics frozen), and only adversarial inputs are used for training.
    Choice: the project's ``pgd`` returns the highest-CE iterate per image (the start counts),
    which costs one forward without backward after the last step; with CE and fixed steps this
    is almost always the last iterate. Cost per batch: k + 1 forwards and k input-gradient
    backwards (``scripts/benchmark_training.py`` compares it with k + 1 clean training steps).
    Classifiers returning (B, K, 1, 1) logits with (B, 1, 1) labels work too (pre-training).
    """
    from robust_seg.attacks.pgd import pgd

    was_training = model.training
    model.eval()
    try:
        result = pgd(model, images, labels, eps=parse_radius(cfg.eps, "scheme.adversarial.eps"), loss=cfg.loss,
                     iterations=cfg.steps, step_size=cfg.step_size, random_start=cfg.random_start)
    finally:
        model.train(was_training)
    return result.adv_images.detach()
