"""Optimisers and learning-rate schedules of the SEA paper Table 5."""
from __future__ import annotations

import torch

from robust_seg.errors import ConfigError


def parameter_groups(model, lr: float, decoder_lr_ratio: float) -> list[dict]:
    """Backbone (encoder) at ``lr``, everything else (decoder, auxiliary head) at ``lr * decoder_lr_ratio``."""
    backbone = {id(p) for p in model.backbone().parameters()}
    encoder = [p for p in model.parameters() if id(p) in backbone and p.requires_grad]
    decoder = [p for p in model.parameters() if id(p) not in backbone and p.requires_grad]
    return [{"params": encoder, "lr": lr, "name": "encoder"},
            {"params": decoder, "lr": lr * decoder_lr_ratio, "name": "decoder"}]


def build_optimizer(cfg, model) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg.lr, cfg.decoder_lr_ratio)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ConfigError(f"optimizer.name must be sgd or adamw, got '{cfg.name}'")


def warmup_poly_factor(step: int, total_steps: int, warmup_steps: int, power: float,
                       warmup_start_factor: float = 1e-6) -> float:
    """LR multiplier at optimisation ``step``: linear warmup from ``warmup_start_factor`` to 1
    over ``warmup_steps``, then polynomial decay ``(1 - t)^power`` to 0 at ``total_steps`` (Table 5)."""
    if step < warmup_steps:
        return warmup_start_factor + (1 - warmup_start_factor) * step / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return max(1.0 - progress, 0.0) ** power


def build_scheduler(cfg, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_poly_factor(step, total, warmup, cfg.power, cfg.warmup_start_factor))
