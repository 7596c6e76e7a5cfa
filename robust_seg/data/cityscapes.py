"""Cityscapes (Cordts et al. 2016) fine annotations in the released on-disk layout (thesis Sec. 5.5.2).

``root = cityscapes`` holding ``leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png`` and
``gtFine/{train,val}/<city>/<stem>_gtFine_labelTrainIds.png`` (grey PNG of train ids, written by
cityscapesScripts' ``createTrainIdLabelImgs.py`` or MMSeg's ``tools/dataset_converters/cityscapes.py``):
19 classes 0..18, 255 = ignore (the "no label" pixels of the thesis). Splits: 2975 training and
500 validation images, all 2048x1024. Names are ``<city>/<stem>``, sorted.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from robust_seg.data.errors import check_layout

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
                      "bicycle")

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
LAYOUT = ("expected leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
          "gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png")


def cityscapes_files(root: str | None, split: str) -> Tuple[List[Tuple[Path, Path]], List[str]]:
    """(image, label) paths and names of ``split``; raises ``DatasetNotFoundError`` on a missing/malformed root."""
    base, fail = check_layout("Cityscapes", root, LAYOUT, (f"leftImg8bit/{split}", f"gtFine/{split}"))
    image_dir, label_dir = base / "leftImg8bit" / split, base / "gtFine" / split
    images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not images:
        raise fail(f"malformed (no <city>/*{IMAGE_SUFFIX} in leftImg8bit/{split}/)")
    stems = [f"{image.parent.name}/{image.name[:-len(IMAGE_SUFFIX)]}" for image in images]
    files = [(image, label_dir / f"{stem}{LABEL_SUFFIX}") for image, stem in zip(images, stems)]
    missing = [label for _, label in files if not label.is_file()]
    if missing:
        raise fail(f"malformed ({len(missing)} labelTrainIds missing, e.g. {missing[0].relative_to(base)})")
    return files, stems
