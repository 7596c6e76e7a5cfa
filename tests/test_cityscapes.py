"""Cityscapes: a fixture dataset in the real on-disk layout (tiny PNGs), class list, config, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from robust_seg import IGNORE_INDEX
from robust_seg.data import DatasetError, DatasetNotFoundError, as_dataset_config, build_dataset, build_loader, class_names
from tests.conftest import compose_config

DATASET_YAML = Path(__file__).resolve().parents[1] / "configs" / "dataset" / "cityscapes.yaml"
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau")}


def write_cityscapes(root: Path, shape=(8, 16), per_city: int = 2, max_label: int = 18) -> dict[str, np.ndarray]:
    """leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png + gtFine/..._gtFine_labelTrainIds.png."""
    rng = np.random.default_rng(0)
    labels = {}
    for split, cities in CITIES.items():
        for city in cities:
            (root / "leftImg8bit" / split / city).mkdir(parents=True)
            (root / "gtFine" / split / city).mkdir(parents=True)
            for frame in range(per_city):
                stem = f"{city}_000000_{frame:06d}"
                image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
                label = rng.integers(0, max_label + 1, size=shape).astype(np.uint8)
                label[0, 0] = IGNORE_INDEX
                Image.fromarray(label, mode="L").save(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png")
                # the other gtFine files of the release must be ignored
                Image.fromarray(label, mode="L").save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
                labels[f"{city}/{stem}"] = label
    return labels


def config(root: Path, **overrides):
    cfg = OmegaConf.load(DATASET_YAML)
    cfg.root = str(root)
    return OmegaConf.merge(cfg, overrides)


def test_reads_the_release_layout_with_train_ids_and_ignore(tmp_path):
    labels = write_cityscapes(tmp_path)
    cfg = config(tmp_path)
    val = build_dataset(cfg, "val", train=False)
    assert len(val) == 4 and len(build_dataset(cfg, "train", train=False)) == 4
    assert val.names == ["frankfurt/frankfurt_000000_000000", "frankfurt/frankfurt_000000_000001",
                         "lindau/lindau_000000_000000", "lindau/lindau_000000_000001"]
    item = val[2]
    assert item["image"].shape == (3, 8, 16) and item["image"].dtype == torch.float32
    assert torch.equal(item["label"], torch.from_numpy(labels[item["name"]].astype(np.int64)))
    assert int(item["label"][0, 0]) == IGNORE_INDEX
    batch = next(iter(build_loader(val, batch_size=4, train=False, seed=0)))  # same-size images batch
    assert batch["image"].shape == (4, 3, 8, 16)


def test_class_list_config_and_training_crop(tmp_path):
    write_cityscapes(tmp_path)
    cfg = as_dataset_config(config(tmp_path, base_size=16, crop_size=12))
    names = class_names(cfg)
    assert len(names) == cfg.num_classes == 19 and names[0] == "road" and names[18] == "bicycle"
    item = build_dataset(cfg, "train", train=True)[0]
    assert item["image"].shape == (3, 12, 12) and item["label"].shape == (12, 12)
    shipped = as_dataset_config(OmegaConf.load(DATASET_YAML))
    assert (shipped.name, shipped.eval_size, shipped.train_split, shipped.val_split) == ("cityscapes", None, "train", "val")
    assert compose_config("evaluate", ["dataset=cityscapes"]).dataset.num_classes == 19


def test_eval_size_resizes_to_ddcat_resolution(tmp_path):
    write_cityscapes(tmp_path, shape=(16, 32))
    item = build_dataset(config(tmp_path, eval_size=16), "val", train=False)[0]  # 32x16 -> 16x8, padded to 16x16
    assert item["image"].shape == (3, 16, 16) and bool((item["label"][8:] == IGNORE_INDEX).all())


def _one_line(error: Exception, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message


def test_missing_and_malformed_roots_fail_in_one_line(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        build_dataset(config(tmp_path / "none"), "val", train=False)
    _one_line(error.value, "Cityscapes not found", str(tmp_path / "none"), "leftImg8bit/{train,val}")
    write_cityscapes(tmp_path / "c")
    with pytest.raises(DatasetNotFoundError) as error:
        build_dataset(config(tmp_path / "c"), "test", train=False)
    _one_line(error.value, "malformed", "leftImg8bit/test")
    (tmp_path / "c/gtFine/val/lindau/lindau_000000_000000_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(DatasetNotFoundError) as error:
        build_dataset(config(tmp_path / "c"), "val", train=False)
    _one_line(error.value, "1 labelTrainIds missing", "gtFine/val/lindau/lindau_000000_000000_gtFine_labelTrainIds.png")


def test_label_ids_instead_of_train_ids_are_rejected(tmp_path):
    write_cityscapes(tmp_path, max_label=33)  # labelIds (0..33) saved under the trainIds name
    with pytest.raises(DatasetError, match="outside 0..18"):
        for item in build_dataset(config(tmp_path), "val", train=False):
            pass
