"""PASCAL-VOC 2012 with the SBD augmentation (Hariharan et al. 2011), MMSeg on-disk layout.

``root = VOCdevkit/VOC2012`` holding ``JPEGImages/<id>.jpg``,
``SegmentationClass/<id>.png`` (palette PNG, 0..20, 255 on object outlines),
``SegmentationClassAug/<id>.png`` (SBD labels as grey PNG) and the id lists
``ImageSets/Segmentation/<split>.txt``. The ``train_aug`` split (10582 ids;
MMSeg's converter names the file ``aug.txt``, both names are accepted) reads
labels from ``SegmentationClassAug``; every other split (``train``, ``val`` =
1449 ids, ...) from ``SegmentationClass``. 21 classes including background,
ignore 255 (SEA paper App. B.2).

Note: the SEA paper reports a training set of 8498 images (the SBD ``train``
list); to train on exactly that set, put its ids in
``ImageSets/Segmentation/sbd_train.txt`` with labels in ``SegmentationClassAug``
and set ``dataset.train_split=sbd_train``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from robust_seg.data.errors import check_layout

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")

_SPLIT_FILES = {"train_aug": ("train_aug.txt", "aug.txt"), "aug": ("aug.txt", "train_aug.txt")}
_AUG_SPLITS = ("train_aug", "aug", "sbd_train")
LAYOUT = ("expected JPEGImages/, SegmentationClass/ (val), SegmentationClassAug/ (train_aug), "
          "ImageSets/Segmentation/{train_aug|aug,val}.txt")


def label_dir_name(split: str) -> str:
    return "SegmentationClassAug" if split in _AUG_SPLITS else "SegmentationClass"


def voc_files(root: str | None, split: str) -> Tuple[List[Tuple[Path, Path]], List[str]]:
    """(image, label) paths and ids of ``split``; raises ``DatasetNotFoundError`` on a missing/malformed root."""
    label_dir = label_dir_name(split)
    base, fail = check_layout("PASCAL-VOC", root, LAYOUT, ("JPEGImages", label_dir))
    lists = base / "ImageSets" / "Segmentation"
    candidates = [lists / name for name in _SPLIT_FILES.get(split, (f"{split}.txt",))]
    split_file = next((path for path in candidates if path.is_file()), None)
    if split_file is None:
        raise fail(f"malformed (no ImageSets/Segmentation/{candidates[0].name} for split {split!r})")
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise fail(f"malformed (empty {split_file.name})")
    files = [(base / "JPEGImages" / f"{i}.jpg", base / label_dir / f"{i}.png") for i in ids]
    missing = [path for pair in files for path in pair if not path.is_file()]
    if missing:
        raise fail(f"malformed ({len(missing)} files listed in {split_file.name} are missing, "
                   f"e.g. {missing[0].relative_to(base)})")
    return files, ids
