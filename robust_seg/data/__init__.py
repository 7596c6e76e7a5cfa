"""Datasets (synthetic, PASCAL-VOC + SBD, ADE20K, Cityscapes), Table 5 transforms and deterministic loaders.

Public API::

    build_dataset(cfg, split, train) -> SegmentationDataset   # items {"image", "label", "index", "name"}
    build_loader(dataset, batch_size, train, seed, num_workers=0, distributed=False) -> DataLoader
    set_epoch(loader, epoch)
    DatasetConfig, SyntheticConfig, as_dataset_config
    DatasetError, DatasetNotFoundError
"""
from __future__ import annotations

from typing import Any, Optional

from robust_seg.data.ade20k import ADE20K_CLASSES, ade20k_files
from robust_seg.data.base import FileSegmentationDataset, SegmentationDataset
from robust_seg.data.cityscapes import CITYSCAPES_CLASSES, cityscapes_files
from robust_seg.data.config import DatasetConfig, SyntheticConfig, as_dataset_config
from robust_seg.data.errors import DatasetError, DatasetNotFoundError
from robust_seg.data.loaders import build_loader, set_epoch
from robust_seg.data.synthetic import SyntheticSegmentation, synthetic_class_names
from robust_seg.data.protocols import eval_protocol
from robust_seg.data.transforms import SeaTrainTransform, TrainTransform
from robust_seg.data.voc import VOC_CLASSES, voc_files

__all__ = ["DatasetConfig", "SyntheticConfig", "DatasetError", "DatasetNotFoundError", "SegmentationDataset",
           "as_dataset_config", "build_dataset", "build_loader", "class_names", "set_epoch"]

_FILE_LISTS = {"pascal_voc": (voc_files, VOC_CLASSES), "ade20k": (ade20k_files, ADE20K_CLASSES),
               "cityscapes": (cityscapes_files, CITYSCAPES_CLASSES)}


def class_names(cfg: Any) -> list[str]:
    """The K class names of the configured dataset (index = label value)."""
    cfg = as_dataset_config(cfg)
    names = synthetic_class_names(cfg.num_classes) if cfg.name == "synthetic" else list(_FILE_LISTS[cfg.name][1])
    if len(names) != cfg.num_classes:
        raise DatasetError(f"dataset {cfg.name} has {len(names)} classes but num_classes={cfg.num_classes}")
    return names


def build_dataset(cfg: Any, split: str, train: bool) -> SegmentationDataset:
    """Dataset of ``split`` (e.g. ``cfg.train_split`` / ``cfg.val_split``).

    ``train=True``: Table 5 augmentation (``cfg.augmentation``: ``SeaTrainTransform`` or
    ``TrainTransform``: flip, random scale of ``base_size``, pad, blur, ``crop_size`` crop),
    output crop_size x crop_size; ``train=False``: the evaluation protocol
    (``robust_seg.data.protocols.eval_protocol``). ``cfg`` may be a
    ``DatasetConfig`` or a DictConfig/dict validated against it. Missing or
    malformed roots raise ``DatasetNotFoundError``.
    """
    cfg = as_dataset_config(cfg)
    names = class_names(cfg)
    if train:
        pipeline = SeaTrainTransform if cfg.augmentation == "sea" else TrainTransform
        transform = pipeline(cfg.base_size, cfg.crop_size, tuple(cfg.scale_range), cfg.flip, cfg.gaussian_blur,
                             cfg.train_label_pad)
    else:
        transform = eval_protocol(cfg)
    if cfg.name == "synthetic":
        return SyntheticSegmentation(num_classes=cfg.num_classes, cfg=cfg.synthetic, split=split, seed=cfg.seed,
                                     transform=transform, max_images=cfg.max_images)
    files, ids = _FILE_LISTS[cfg.name][0](cfg.root, split)
    limit: Optional[int] = cfg.max_images
    return FileSegmentationDataset(files=files[:limit], names=ids[:limit], class_names=names, transform=transform,
                                   seed=cfg.seed)
