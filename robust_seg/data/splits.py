"""A seeded split of a training set into training and held-out images (CALS multipliers, temperature fits)."""
from __future__ import annotations

import torch


def split_train_validation(num_items: int, fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic random split of ``range(num_items)`` into (train, validation) index lists.

    Appendix V.2 holds out 20% of the PASCAL-VOC training set (1464 -> 1171 / 293
    images) to estimate the multipliers; the validation size is
    ``round(fraction * num_items)``. Both lists are sorted.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(num_items, generator=generator)
    num_validation = int(round(fraction * num_items))
    validation = sorted(permutation[:num_validation].tolist())
    train = sorted(permutation[num_validation:].tolist())
    return train, validation
