"""Deterministic data loaders.

Shuffling is a pure function of (seed, epoch); augmentation is a pure function of
(dataset seed, epoch, index) (see ``base.SegmentationDataset``), so batches do not
depend on ``num_workers``. Call :func:`set_epoch` before iterating each epoch
(workers are not persistent, so they see the new epoch).
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate

from robust_seg.data.base import seeded_generator
from robust_seg.data.errors import DatasetError


class EpochShuffleSampler(Sampler[int]):
    """Random permutation of all indices, drawn from a generator seeded by (seed, epoch)."""

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.length, generator=seeded_generator(self.seed, self.epoch)).tolist())

    def __len__(self) -> int:
        return self.length


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` in order: every sample evaluated exactly once across ranks (no padding)."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def set_epoch(self, epoch: int) -> None:  # evaluation order does not change
        pass

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loader(dataset: Dataset, batch_size: int, train: bool, seed: int, num_workers: int = 0,
                 distributed: bool = False) -> DataLoader:
    """DataLoader over ``dataset`` (items are dicts, default collation stacks them).

    train: shuffled by (seed, epoch), last incomplete batch dropped (BatchNorm and
    PSP pooling need > 1 sample). Under ``distributed`` a ``DistributedSampler``
    (seeded, ``drop_last=True``) splits the data between ranks.
    eval: sequential, nothing dropped; under ``distributed`` each rank gets the
    strided shard ``rank::world_size`` with no duplicated samples, so summing
    per-rank statistics counts each image once.
    Raises ``DatasetError`` if a training epoch would have no full batch.
    """
    if distributed:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        sampler: Sampler[int] = (DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                                    seed=seed, drop_last=True) if train
                                 else ShardSampler(len(dataset), rank, world_size))
    else:
        sampler = EpochShuffleSampler(len(dataset), seed) if train else ShardSampler(len(dataset), 0, 1)
    if train and len(sampler) < batch_size:
        raise DatasetError(f"training epoch has {len(sampler)} samples per process, fewer than batch_size "
                           f"{batch_size}: no full batch")
    # An own generator: iterating a DataLoader draws its workers' base seed from it, and drawing from the
    # global RNG would make an evaluation pass shift the randomness of the training around it.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=train, num_workers=num_workers,
                      persistent_workers=False, generator=torch.Generator().manual_seed(seed),
                      collate_fn=None if train else collate_same_size)


def collate_same_size(items: list[dict]) -> dict:
    """Default collation, refusing (one line, naming two images) a batch whose images differ in size."""
    sizes = {tuple(item["image"].shape[-2:]) for item in items}
    if len(sizes) > 1:
        first = items[0]
        other = next(item for item in items if tuple(item["image"].shape[-2:]) != tuple(first["image"].shape[-2:]))
        raise DatasetError(f"images of different sizes in one batch ({first['name']}: "
                           f"{tuple(first['image'].shape[-2:])}, {other['name']}: {tuple(other['image'].shape[-2:])}): "
                           "evaluate with batch_size=1, or a protocol that gives every image one size "
                           "(dataset.protocol=pad dataset.eval_size=S, or dataset.protocol=sea)")
    return default_collate(items)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch of the loader's sampler (shuffling) and dataset (augmentation)."""
    loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
