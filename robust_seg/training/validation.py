"""Validation during training: clean ACC/mIoU and a short PGD robust ACC (SEA paper Sec. 3)."""
from __future__ import annotations

import torch

from robust_seg.attacks.losses import predicted_classes
from robust_seg.attacks.pgd import pgd, short_pgd_step_size
from robust_seg.data import build_loader
from robust_seg.metrics.segmentation import confusion_matrix, mean_iou, pixel_accuracy
from robust_seg.radii import parse_radius


def short_pgd_accuracy(model, images: torch.Tensor, labels: torch.Tensor, eps: float, iterations: int,
                       step_size: float | None = None) -> torch.Tensor:
    """Per-image pixel accuracy (B,) as a fraction, like ``pixel_accuracy``, under a short CE PGD: the robustness
    check of training and pre-training (``robust_eval``; step 2.5 eps / iterations unless given)."""
    result = pgd(model, images, labels, eps=eps, loss="ce", iterations=iterations,
                 step_size=step_size or short_pgd_step_size(eps, iterations))
    return pixel_accuracy(result.predictions, labels)


def validate(model, val_set, cfg, device, class_names: list[str]) -> dict:
    """``val_acc``/``val_miou`` on the whole validation split; ``robust_acc`` under PGD on its first images."""
    was_training = model.training
    model.eval()
    num_classes = len(class_names)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    accuracies, robust = [], []
    eps = parse_radius(cfg.robust_eval.eps, "robust_eval.eps")
    budget = cfg.robust_eval.max_images if cfg.robust_eval.max_images is not None else len(val_set)
    loader = build_loader(val_set, cfg.micro_batch_size or cfg.batch_size, train=False, seed=0)
    for batch in loader:
        images, labels = batch["image"].to(device), batch["label"].to(device)
        with torch.no_grad():
            predictions = predicted_classes(model(images))
        confusion += confusion_matrix(predictions, labels, num_classes)
        accuracies.append(pixel_accuracy(predictions, labels).cpu())
        if budget > 0 and cfg.robust_eval.iterations > 0 and eps > 0:
            take = min(budget, images.shape[0])
            robust.append(short_pgd_accuracy(model, images[:take], labels[:take], eps, cfg.robust_eval.iterations,
                                             cfg.robust_eval.step_size).cpu())
            budget -= take
    model.train(was_training)
    metrics = {"val_acc": 100 * torch.cat(accuracies).mean().item(), "val_miou": 100 * mean_iou(confusion)}
    if robust:
        metrics["robust_acc"] = 100 * torch.cat(robust).mean().item()
    return metrics
