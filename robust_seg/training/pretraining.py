"""Classifier pre-training of a segmentation backbone: the stand-in for (robust) ImageNet pre-training.

PIR-AT (SEA paper Sec. 3.1, App. B.3) initialises the backbone of a segmentation model with an
adversarially robust ImageNet classifier, plain AT with a clean one. Without ImageNet, the embedded
demonstration (``scripts/demo_pirat.sh``) pre-trains the small backbone on a synthetic
*classification* task, cleanly or adversarially, and saves it in the ``mmseg`` backbone format
(keys of ``model.backbone()``), so that
``model.backbone_init=robust model.backbone_format=mmseg model.backbone_checkpoints.robust=<file>``
loads it.

Task (a choice; the paper has none): images of the procedural dataset
(``robust_seg.data.synthetic``) drawn with another seed than the segmentation data (a separate
"ImageNet"), labelled with their dominant object class -- the object class covering most labelled
pixels, background when there is none. The classifier is the backbone, a global average pool of
its last stage and a linear layer.

Adversarial pre-training is PGD adversarial training on the CE loss with the project's PGD
(``robust_seg.training.adversary``): the classifier returns its logits as a 1x1 "segmentation"
(B, K, 1, 1) with labels (B, 1, 1), so the segmentation attacks apply unchanged.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robust_seg import IGNORE_INDEX
from robust_seg.data import build_dataset, build_loader, set_epoch
from robust_seg.errors import ConfigError
from robust_seg.models import build_model
from robust_seg.radii import parse_radius
from robust_seg.reporting.files import atomic_torch_save, atomic_write_json
from robust_seg.run.runtime import seed_everything
from robust_seg.training.adversary import adversarial_examples
from robust_seg.training.optim import warmup_poly_factor

log = logging.getLogger(__name__)


def dominant_class_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,) the object class (>= 1) with the most labelled pixels of each (B, H, W) label map; 0 if none.

    Ties go to the smaller class index. Ignored pixels (``IGNORE_INDEX``) never count.
    """
    valid = labels != IGNORE_INDEX
    one_hot = F.one_hot(torch.where(valid, labels, 0), num_classes) * valid.unsqueeze(-1)
    counts = one_hot.flatten(1, 2).sum(1)  # (B, K)
    counts[:, 0] = 0
    dominant = counts.argmax(1)
    return torch.where(counts.amax(1) > 0, dominant, torch.zeros_like(dominant))


class BackboneClassifier(nn.Module):
    """Backbone -> global average pool of its last returned stage -> linear layer.

    Called like a segmentation model: images (B, 3, H, W) in [0, 1] -> logits (B, K, 1, 1)
    (normalisation with ``mean``/``std`` inside, as ``SegmentationModel``).
    """

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int, mean, std):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(channels, num_classes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone((images - self.mean) / self.std)[-1]
        return self.head(features.mean((2, 3)))[:, :, None, None]


def build_classifier(cfg, num_classes: int) -> BackboneClassifier:
    """The backbone of ``cfg.model`` (randomly initialised as in segmentation) with a linear head."""
    backbone = build_model(cfg.model, num_classes).backbone()
    with torch.no_grad():
        channels = backbone(torch.zeros(1, 3, 64, 64))[-1].shape[1]
    return BackboneClassifier(backbone, channels, num_classes, list(cfg.model.mean), list(cfg.model.std))


@torch.no_grad()
def _clean_predictions(classifier, images):
    return classifier(images).argmax(1)[:, 0, 0]


def evaluate_classifier(classifier, dataset, cfg, num_classes: int) -> dict:
    """Clean accuracy on ``dataset`` and PGD accuracy (``cfg.robust_eval``) on its first images, in %."""
    from robust_seg.training.validation import short_pgd_accuracy

    classifier.eval()
    eps = parse_radius(cfg.robust_eval.eps, "robust_eval.eps")
    budget = cfg.robust_eval.max_images
    correct, total, robust_correct, robust_total = 0, 0, 0, 0
    for batch in build_loader(dataset, cfg.batch_size, train=False, seed=0):
        images, targets = batch["image"], dominant_class_labels(batch["label"], num_classes)
        correct += (_clean_predictions(classifier, images) == targets).sum().item()
        total += len(targets)
        take = min(budget - robust_total, len(targets))
        if take > 0 and cfg.robust_eval.iterations > 0:
            accuracy = short_pgd_accuracy(classifier, images[:take], targets[:take, None, None], eps,
                                          cfg.robust_eval.iterations)
            robust_correct += accuracy.sum().item()
            robust_total += take
    metrics = {"val_acc": 100 * correct / max(total, 1)}
    if robust_total:
        metrics["robust_acc"] = 100 * robust_correct / robust_total
    return metrics


def pretrain_backbone(cfg, run_dir: str | Path) -> dict:
    """Train ``BackboneClassifier`` on the dominant-class task; save the backbone to ``cfg.output``.

    ``cfg.adversarial`` null: clean training; else PGD AT with its ``eps``/``steps``/``step_size``
    (adversarial inputs only, generated in eval mode, as ``scheme=at``). AdamW with linear
    warmup and linear decay (``warmup_poly_factor`` with power 1), stepped per batch.
    """
    if not cfg.output:
        raise ConfigError("output: give the path of the backbone checkpoint to write")
    run_dir = Path(run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    num_classes = cfg.dataset.num_classes
    train_set = build_dataset(cfg.dataset, split="train", train=True)
    val_set = build_dataset(cfg.dataset, split="val", train=False)
    loader = build_loader(train_set, cfg.batch_size, train=True, seed=cfg.seed)
    classifier = build_classifier(cfg, num_classes)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total, warmup = cfg.epochs * len(loader), int(round(cfg.warmup_epochs * len(loader)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_poly_factor(step, total, warmup, 1.0))
    history = []
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        set_epoch(loader, epoch)
        classifier.train()
        running = torch.zeros(())
        for batch in loader:
            images, targets = batch["image"], dominant_class_labels(batch["label"], num_classes)
            if cfg.adversarial is not None:
                images = adversarial_examples(classifier, images, targets[:, None, None], cfg.adversarial)
            loss = F.cross_entropy(classifier(images)[:, :, 0, 0], targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.detach()
        entry = {"epoch": epoch + 1, "train_loss": (running / len(loader)).item(),
                 "seconds": time.perf_counter() - started}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            entry.update(evaluate_classifier(classifier, val_set, cfg, num_classes))
        history.append(entry)
        log.info("epoch %d: %s", epoch + 1, entry)
    atomic_torch_save(Path(cfg.output), classifier.backbone.state_dict())
    results = {"history": history, "final": history[-1], "output": str(cfg.output),
               "adversarial": cfg.adversarial is not None}
    atomic_write_json(run_dir / "pretrain_results.json", results)
    log.info("backbone written to %s", cfg.output)
    return results
