"""ADE20K (SceneParsing ADEChallengeData2016) in its released on-disk layout.

``root = ADEChallengeData2016`` holding ``images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png`` (grey PNG, same stem). Labels are used
as stored: 0 = "other"/background is a class, 1..150 the objects, so K = 151 as
in the SEA paper App. B.2 (no reduce_zero_label). Splits: 20210 training and 2000
validation images.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from robust_seg.data.errors import check_layout

ADE20K_CLASSES = (
    "background", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car",
    "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag")

LAYOUT = "expected images/{training,validation}/*.jpg and annotations/{training,validation}/*.png"


def ade20k_files(root: str | None, split: str) -> Tuple[List[Tuple[Path, Path]], List[str]]:
    """(image, label) paths and names of ``split``; raises ``DatasetNotFoundError`` on a missing/malformed root."""
    base, fail = check_layout("ADE20K", root, LAYOUT, (f"images/{split}", f"annotations/{split}"))
    image_dir, label_dir = base / "images" / split, base / "annotations" / split
    images = sorted(image_dir.glob("*.jpg"))
    if not images:
        raise fail(f"malformed (no .jpg in images/{split}/)")
    files = [(image, label_dir / f"{image.stem}.png") for image in images]
    missing = [label for _, label in files if not label.is_file()]
    if missing:
        raise fail(f"malformed ({len(missing)} annotations missing, e.g. {missing[0].relative_to(base)})")
    return files, [image.stem for image in images]
