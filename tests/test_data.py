"""Data layer: fixture datasets in the real on-disk layouts, synthetic data, transforms, loaders, configs."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError
from PIL import Image

from robust_seg import IGNORE_INDEX
from robust_seg.data import (DatasetConfig, DatasetError, DatasetNotFoundError, as_dataset_config,
                             build_dataset, build_loader, class_names, set_epoch)
from robust_seg.data.loaders import ShardSampler
from robust_seg.data.synthetic import _ignore_borders
from robust_seg.data.transforms import EvalTransform, TrainTransform, gaussian_blur, resize_long_side

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "dataset"


def _random_label(rng: np.random.Generator, shape, num_classes: int) -> np.ndarray:
    label = rng.integers(0, num_classes, size=shape).astype(np.uint8)
    label[0, :] = IGNORE_INDEX  # a VOC-like ignore border
    return label


def _write_jpeg(path: Path, rng: np.random.Generator, shape) -> None:
    Image.fromarray(rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)).save(path, quality=95)


def _palette_png(path: Path, label: np.ndarray) -> None:
    image = Image.fromarray(label, mode="P")
    palette = np.random.default_rng(0).integers(0, 256, size=768).astype(np.uint8)  # colours are irrelevant
    image.putpalette(palette.tolist())
    image.save(path)


def write_voc(root: Path, train_ids, val_ids, *, split_file: str = "train_aug.txt", shape=(40, 56)):
    """A tiny VOCdevkit/VOC2012 tree; returns {id: (class label, aug label)}."""
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    labels = {}
    for image_id in sorted(set(train_ids) | set(val_ids)):
        _write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", rng, shape)
        voc_label, aug_label = _random_label(rng, shape, 21), _random_label(rng, shape, 21)
        _palette_png(root / "SegmentationClass" / f"{image_id}.png", voc_label)
        Image.fromarray(aug_label, mode="L").save(root / "SegmentationClassAug" / f"{image_id}.png")
        labels[image_id] = (voc_label, aug_label)
    (root / "ImageSets/Segmentation" / split_file).write_text("\n".join(train_ids) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(val_ids) + "\n")
    return labels


def write_ade(root: Path, counts=(("training", 3), ("validation", 2)), shape=(36, 50), max_label: int = 150):
    rng = np.random.default_rng(1)
    labels = {}
    for split, count in counts:
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(count):
            name = f"ADE_{split[:5]}_{i:08d}"
            _write_jpeg(root / "images" / split / f"{name}.jpg", rng, shape)
            label = rng.integers(0, 151, size=shape).astype(np.uint8)
            label[0, 0], label[0, 1] = 0, max_label
            Image.fromarray(label, mode="L").save(root / "annotations" / split / f"{name}.png")
            labels[name] = label
    return labels


def voc_config(root: Path, **overrides) -> DatasetConfig:
    cfg = OmegaConf.load(CONFIGS / "pascal_voc.yaml")
    cfg.root = str(root)
    return as_dataset_config(OmegaConf.merge(cfg, overrides))


def ade_config(root: Path, **overrides) -> DatasetConfig:
    cfg = OmegaConf.load(CONFIGS / "ade20k.yaml")
    cfg.root = str(root)
    return as_dataset_config(OmegaConf.merge(cfg, overrides))


def synthetic_config(**overrides) -> DatasetConfig:
    return as_dataset_config(OmegaConf.merge(OmegaConf.load(CONFIGS / "synthetic.yaml"), overrides))


# ---------------------------------------------------------------- PASCAL-VOC


def test_voc_val_reads_palette_labels_exactly(tmp_path):
    labels = write_voc(tmp_path, ["a1", "a2", "a3"], ["v1", "v2"])
    dataset = build_dataset(voc_config(tmp_path, eval_size=None), "val", train=False)
    assert len(dataset) == 2 and dataset.num_classes == 21 and dataset.class_names[0] == "background"
    item = dataset[1]
    assert item["name"] == "v2" and item["index"] == 1
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 40, 56)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["label"].dtype == torch.int64
    assert torch.equal(item["label"], torch.from_numpy(labels["v2"][0].astype(np.int64)))  # palette indices, 255 kept


def test_voc_train_aug_uses_sbd_labels_and_aug_txt_alias(tmp_path):
    labels = write_voc(tmp_path, ["a1", "a2", "a3"], ["v1"], split_file="aug.txt")  # MMSeg's converter name
    cfg = voc_config(tmp_path, eval_size=None)
    dataset = build_dataset(cfg, "train_aug", train=False)
    assert dataset.names == ["a1", "a2", "a3"]
    assert torch.equal(dataset[2]["label"], torch.from_numpy(labels["a3"][1].astype(np.int64)))


def test_voc_eval_size_pads_without_resizing(tmp_path):
    labels = write_voc(tmp_path, ["a1"], ["v1"])
    item = build_dataset(voc_config(tmp_path, eval_size=64), "val", train=False)[0]
    assert item["image"].shape == (3, 64, 64) and item["label"].shape == (64, 64)
    assert torch.equal(item["label"][:40, :56], torch.from_numpy(labels["v1"][0].astype(np.int64)))
    assert bool((item["label"][40:] == IGNORE_INDEX).all()) and bool((item["label"][:, 56:] == IGNORE_INDEX).all())
    assert float(item["image"][:, 40:].abs().max()) == 0.0


def test_voc_train_transform_crop_size_and_determinism(tmp_path):
    write_voc(tmp_path, ["a1", "a2", "a3", "a4"], ["v1"])
    cfg = voc_config(tmp_path, base_size=48, crop_size=32)
    first, second = build_dataset(cfg, "train_aug", True), build_dataset(cfg, "train_aug", True)
    items = [first[i] for i in range(4)]
    for item in items:
        assert item["image"].shape == (3, 32, 32) and item["label"].shape == (32, 32)
        assert set(item["label"].unique().tolist()) <= set(range(21)) | {IGNORE_INDEX}
    for i in reversed(range(4)):  # order of access does not matter
        again = second[i]
        assert torch.equal(again["image"], items[i]["image"]) and torch.equal(again["label"], items[i]["label"])
    second.set_epoch(1)
    assert any(not torch.equal(second[i]["image"], items[i]["image"]) for i in range(4))
    other_seed = build_dataset(voc_config(tmp_path, base_size=48, crop_size=32, seed=1), "train_aug", True)
    assert any(not torch.equal(other_seed[i]["image"], items[i]["image"]) for i in range(4))


def test_voc_max_images(tmp_path):
    write_voc(tmp_path, ["a1", "a2", "a3"], ["v1", "v2"])
    assert len(build_dataset(voc_config(tmp_path, max_images=2), "train_aug", False)) == 2


def _one_line_error(call, *fragments):
    with pytest.raises(DatasetNotFoundError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "dataset.root" in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_voc_missing_and_malformed_roots(tmp_path):
    missing = tmp_path / "nowhere"
    _one_line_error(lambda: build_dataset(voc_config(missing), "val", False), str(missing), "JPEGImages/",
                    "ImageSets/Segmentation")
    write_voc(tmp_path, ["a1"], ["v1"])
    (tmp_path / "ImageSets/Segmentation/val.txt").unlink()
    _one_line_error(lambda: build_dataset(voc_config(tmp_path), "val", False), str(tmp_path), "val.txt")
    (tmp_path / "JPEGImages/a1.jpg").unlink()
    _one_line_error(lambda: build_dataset(voc_config(tmp_path), "train_aug", False), str(tmp_path), "a1.jpg")
    assert issubclass(DatasetNotFoundError, DatasetError) and issubclass(DatasetError, ValueError)


# ---------------------------------------------------------------- ADE20K


def test_ade20k_labels_used_as_is_with_151_classes(tmp_path):
    labels = write_ade(tmp_path)
    cfg = ade_config(tmp_path, eval_size=None)
    train, val = build_dataset(cfg, "training", False), build_dataset(cfg, "validation", False)
    assert (len(train), len(val)) == (3, 2) and train.num_classes == 151 and len(class_names(cfg)) == 151
    item = val[0]
    assert item["name"] == "ADE_valid_00000000" and item["image"].shape == (3, 36, 50)
    assert torch.equal(item["label"], torch.from_numpy(labels[item["name"]].astype(np.int64)))
    assert int(item["label"][0, 0]) == 0 and int(item["label"][0, 1]) == 150  # no reduce_zero_label


def test_ade20k_train_transform_and_eval_downscale(tmp_path):
    write_ade(tmp_path, shape=(30, 80))
    cfg = ade_config(tmp_path, base_size=40, crop_size=24, eval_size=40)
    item = build_dataset(cfg, "training", True)[0]
    assert item["image"].shape == (3, 24, 24) and item["label"].shape == (24, 24)
    item = build_dataset(cfg, "validation", False)[0]  # long side 80 -> 40, short 30 -> 15, padded to 40x40
    assert item["image"].shape == (3, 40, 40)
    assert bool((item["label"][15:] == IGNORE_INDEX).all()) and not bool((item["label"][:15] == IGNORE_INDEX).any())


def test_ade20k_missing_malformed_and_out_of_range(tmp_path):
    _one_line_error(lambda: build_dataset(ade_config(tmp_path / "none"), "validation", False),
                    str(tmp_path / "none"), "annotations/")
    write_ade(tmp_path / "bad", max_label=151)
    with pytest.raises(DatasetError, match="outside 0..150"):
        build_dataset(ade_config(tmp_path / "bad"), "validation", False)[0]
    next((tmp_path / "bad" / "annotations" / "training").glob("*.png")).unlink()
    _one_line_error(lambda: build_dataset(ade_config(tmp_path / "bad"), "training", False), "annotations missing")


# ---------------------------------------------------------------- configs


def test_dataset_yaml_files_validate_against_schema():
    for name, classes, crop in (("synthetic", 6, 64), ("pascal_voc", 21, 473), ("ade20k", 151, 512)):
        cfg = as_dataset_config(OmegaConf.load(CONFIGS / f"{name}.yaml"))
        assert (cfg.name, cfg.num_classes, cfg.crop_size) == (name, classes, crop)
        assert len(class_names(cfg)) == classes
    voc = as_dataset_config(OmegaConf.load(CONFIGS / "pascal_voc.yaml"))
    assert (voc.base_size, voc.flip, voc.gaussian_blur, voc.scale_range) == (512, True, True, [0.5, 2.0])
    ade = as_dataset_config(OmegaConf.load(CONFIGS / "ade20k.yaml"))
    assert ade.base_size == 520 and ade.gaussian_blur


def test_dataset_config_rejects_unknown_and_inconsistent_values():
    base = OmegaConf.load(CONFIGS / "synthetic.yaml")
    with pytest.raises(ConfigKeyError):
        as_dataset_config(OmegaConf.merge(base, {"crop": 3}))
    with pytest.raises(DatasetError, match="num_classes"):
        class_names(OmegaConf.merge(OmegaConf.load(CONFIGS / "pascal_voc.yaml"), {"num_classes": 20}))
    with pytest.raises(DatasetError, match="synthetic"):
        as_dataset_config(OmegaConf.merge(base, {"synthetic": None}))
    with pytest.raises(DatasetError, match="scale_range"):
        as_dataset_config(OmegaConf.merge(base, {"scale_range": [2.0, 1.0]}))
    DatasetConfig()  # schema defaults stay constructible (MISSING values) for Hydra


# ---------------------------------------------------------------- synthetic


def test_synthetic_deterministic_by_seed_and_split():
    cfg = synthetic_config(synthetic={"num_train": 6, "num_val": 6})
    a = build_dataset(cfg, "train", False)
    b = build_dataset(cfg, "train", False)
    for i in (5, 0, 3):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["label"], b[i]["label"])
    other = build_dataset(synthetic_config(seed=1, synthetic={"num_train": 6}), "train", False)
    val = build_dataset(cfg, "val", False)
    assert not torch.equal(a[0]["image"], other[0]["image"]) and not torch.equal(a[0]["image"], val[0]["image"])


def test_synthetic_labels_borders_and_class_coverage():
    dataset = build_dataset(synthetic_config(synthetic={"num_train": 64}), "train", False)
    labels = torch.stack([dataset[i]["label"] for i in range(len(dataset))])
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    assert images.dtype == torch.float32 and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    values = set(labels.unique().tolist())
    assert values == set(range(6)) | {IGNORE_INDEX}  # every class appears, borders are ignored
    fractions = torch.bincount(labels.flatten(), minlength=256).float() / labels.numel()
    assert 0.01 < float(fractions[IGNORE_INDEX]) < 0.15
    assert float(fractions[0]) < 0.7 and float(fractions[1:6].min()) > 0.03  # background does not dominate


def test_synthetic_configurable_size_classes_and_borders():
    cfg = synthetic_config(num_classes=9, base_size=48, crop_size=40,
                           synthetic={"num_train": 40, "num_val": 3, "image_size": 48, "border_width": 0})
    train, val = build_dataset(cfg, "train", False), build_dataset(cfg, "val", False)
    assert (len(train), len(val), train.num_classes) == (40, 3, 9)
    labels = torch.stack([train[i]["label"] for i in range(40)])
    assert labels.shape == (40, 48, 48) and int(labels.max()) == 8 and not bool((labels == IGNORE_INDEX).any())
    assert build_dataset(cfg, "train", True)[0]["image"].shape == (3, 40, 40)
    with pytest.raises(DatasetError):
        build_dataset(cfg, "test", False)


def test_ignore_border_thickness_is_exact():
    label = np.zeros((6, 10), dtype=np.int64)
    label[:, 5:] = 3  # one vertical edge between columns 4 and 5
    for width in (1, 2, 3):
        ignored_columns = (_ignore_borders(label, width) == IGNORE_INDEX).all(0)
        assert int(ignored_columns.sum()) == width
        assert not (_ignore_borders(label, width) == IGNORE_INDEX)[:, ~ignored_columns].any()


def test_synthetic_generation_speed():
    dataset = build_dataset(synthetic_config(), "train", False)  # default size 64x64
    start = time.process_time()  # CPU time: robust to other processes sharing the machine
    for i in range(256):
        dataset[i]
    assert time.process_time() - start < 1.5  # about 0.3 s measured: the 1024 default images in about 1.3 s


# ---------------------------------------------------------------- transforms


def test_train_transform_pads_small_images_with_ignore_and_zero():
    image, label = torch.full((3, 10, 12), 0.5), torch.full((10, 12), 4, dtype=torch.long)
    transform = TrainTransform(base_size=12, crop_size=20, scale_range=(1.0, 1.0), flip=True, gaussian_blur=False)
    out_image, out_label = transform(image, label, torch.Generator().manual_seed(0))
    assert out_image.shape == (3, 20, 20) and out_label.shape == (20, 20)
    assert int((out_label == 4).sum()) == 120 and int((out_label == IGNORE_INDEX).sum()) == 400 - 120
    assert torch.equal(out_image == 0.5, (out_label == 4).expand(3, -1, -1))  # padding is 0 exactly where 255


def test_train_transform_flip_only_is_identity_or_mirror():
    image, label = torch.rand(3, 8, 8), torch.randint(0, 5, (8, 8))
    transform = TrainTransform(base_size=8, crop_size=8, scale_range=(1.0, 1.0), flip=True, gaussian_blur=False)
    flipped = 0
    for seed in range(20):
        out_image, out_label = transform(image, label, torch.Generator().manual_seed(seed))
        is_flip = torch.equal(out_image, image.flip(-1)) and torch.equal(out_label, label.flip(-1))
        assert is_flip or (torch.equal(out_image, image) and torch.equal(out_label, label))
        flipped += is_flip
    assert 3 <= flipped <= 17


def test_random_scale_range_of_long_side():
    image, label = torch.rand(3, 20, 40), torch.zeros(20, 40, dtype=torch.long)
    transform = TrainTransform(base_size=40, crop_size=10, scale_range=(0.5, 2.0), flip=False, gaussian_blur=False)
    sizes = set()
    for seed in range(30):
        generator = torch.Generator().manual_seed(seed)
        expected_long = int(torch.randint(20, 81, (), generator=torch.Generator().manual_seed(seed)))
        out_image, _ = transform(image, label, generator)
        assert out_image.shape == (3, 10, 10)
        sizes.add(expected_long)
    assert min(sizes) >= 20 and max(sizes) <= 80 and len(sizes) > 10
    resized, resized_label = resize_long_side(image, label, 30)
    assert resized.shape == (3, 15, 30) and resized_label.shape == (15, 30)


def test_gaussian_blur_matches_closed_form_kernel():
    image = torch.zeros(3, 15, 15)
    image[:, 7, 7] = 1.0
    sigma = 0.8
    out = gaussian_blur(image, sigma)
    offsets = torch.arange(-3, 4, dtype=torch.float32)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    assert torch.allclose(out[0, 4:11, 4:11], torch.outer(kernel, kernel), atol=1e-6)
    assert torch.allclose(out.sum((1, 2)), torch.ones(3), atol=1e-6)
    constant = torch.full((3, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(constant, 0.5), constant, atol=1e-6)


def test_eval_transform_identity_without_size():
    image, label = torch.rand(3, 5, 7), torch.randint(0, 3, (5, 7))
    out_image, out_label = EvalTransform(None)(image, label, torch.Generator())
    assert out_image is image and out_label is label


# ---------------------------------------------------------------- loaders


def _batches(loader, epoch):
    set_epoch(loader, epoch)
    return [(batch["index"].clone(), batch["image"].clone()) for batch in loader]


def test_train_loader_deterministic_and_reshuffled_per_epoch():
    cfg = synthetic_config(scale_range=[0.8, 1.2], gaussian_blur=True, synthetic={"num_train": 12})
    make = lambda workers: build_loader(build_dataset(cfg, "train", True), 4, True, seed=3, num_workers=workers)
    first, second = make(0), make(0)
    epoch0, again = _batches(first, 0), _batches(second, 0)
    assert len(epoch0) == 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch0, again))
    epoch1 = _batches(first, 1)
    assert not torch.equal(torch.cat([b[0] for b in epoch0]), torch.cat([b[0] for b in epoch1]))
    assert sorted(torch.cat([b[0] for b in epoch1]).tolist()) == list(range(12))
    with_workers = _batches(make(2), 1)  # batches do not depend on the number of workers
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch1, with_workers))
    other_seed = build_loader(build_dataset(cfg, "train", True), 4, True, seed=4)
    assert not torch.equal(torch.cat([b[0] for b in _batches(other_seed, 0)]), torch.cat([b[0] for b in epoch0]))


def test_eval_loader_sequential_and_shards_cover_once():
    dataset = build_dataset(synthetic_config(synthetic={"num_val": 7}), "val", False)
    batches = list(build_loader(dataset, 3, False, seed=0))
    assert torch.equal(torch.cat([b["index"] for b in batches]), torch.arange(7))
    shards = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    with pytest.raises(DatasetError, match="batch_size"):
        build_loader(dataset, 8, True, seed=0)


def test_distributed_loaders_single_process_group(tmp_path):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        dataset = build_dataset(synthetic_config(synthetic={"num_train": 8, "num_val": 5}), "train", True)
        loader = build_loader(dataset, 2, True, seed=0, distributed=True)
        orders = [torch.cat([b[0] for b in _batches(loader, epoch)]) for epoch in (0, 1)]
        assert sorted(orders[0].tolist()) == list(range(8)) and not torch.equal(orders[0], orders[1])
        val = build_dataset(synthetic_config(synthetic={"num_val": 5}), "val", False)
        indices = torch.cat([b["index"] for b in build_loader(val, 2, False, seed=0, distributed=True)])
        assert torch.equal(indices, torch.arange(5))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name, prepare", [("pascal_voc", "pascal_voc"), ("ade20k", "ade20k"),
                                           ("cityscapes", "cityscapes")])
def test_a_missing_dataset_names_the_root_and_the_prepare_command(tmp_path, name, prepare):
    from omegaconf import OmegaConf

    from robust_seg.data import build_dataset
    from robust_seg.data.errors import DatasetNotFoundError
    from robust_seg.names import CONFIGS

    cfg = OmegaConf.load(CONFIGS / "dataset" / f"{name}.yaml")
    cfg.root = str(tmp_path / "missing")
    with pytest.raises(DatasetNotFoundError, match=f"not found at {tmp_path / 'missing'}: .*python -m "
                                                   f"robust_seg.data.prepare {prepare} --archives DIR"):
        build_dataset(cfg, split="val", train=False)
