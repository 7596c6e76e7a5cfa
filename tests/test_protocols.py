"""Evaluation protocols (robust_seg/data/protocols.py), the official training augmentation, the Segmenter's
pad-upsample-crop order and one radius per value.

The official codes are not available here: their behaviour is encoded in hand-computed numbers (output sizes,
crop offsets, the first output column of each label band, the label values of outlines and padding).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from robust_seg import IGNORE_INDEX
from robust_seg.data import build_dataset
from robust_seg.data.protocols import EvalProtocol, resolve_protocol
from robust_seg.data.transforms import SeaTrainTransform
from robust_seg.errors import ConfigError
from robust_seg.radii import parse_radii
from tests.conftest import compose_config, run_in_process
from tests.test_data import voc_config

SIZES = {"a": (375, 500), "b": (500, 333), "c": (473, 473)}
"""Three VOC image sizes (height, width): landscape, portrait, and the crop size itself."""
BAND = 100
"""Labels are vertical bands BAND pixels wide, label 1 + x // BAND; row OUTLINE is an object outline (255)."""
OUTLINE = 10


def band_label(height: int, width: int) -> np.ndarray:
    label = (1 + np.arange(width) // BAND).astype(np.uint8)[None].repeat(height, 0)
    label[OUTLINE] = IGNORE_INDEX
    return label


def band_image(height: int, width: int) -> np.ndarray:
    """Red channel = 40 * band (constant inside a band), green = 7, blue = 200."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = 40 * (1 + np.arange(width) // BAND)
    image[..., 1], image[..., 2] = 7, 200
    return image


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    """A VOCdevkit/VOC2012 tree in the real layout (JPEG images, palette PNG labels) with the three sizes."""
    root = tmp_path_factory.mktemp("protocols") / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for name, (height, width) in SIZES.items():
        Image.fromarray(band_image(height, width)).save(root / "JPEGImages" / f"{name}.jpg", quality=100,
                                                        subsampling=0)
        label = Image.fromarray(band_label(height, width), mode="P")
        label.putpalette([0] * 768)
        label.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(SIZES) + "\n")
    return root


def _items(root, **overrides):
    dataset = build_dataset(voc_config(root, **overrides), split="val", train=False)
    return {item["name"]: item for item in (dataset[i] for i in range(len(dataset)))}


def _first_column(label_row: torch.Tensor, value: int) -> int:
    return int(torch.nonzero(label_row == value)[0])


def test_sea_protocol_short_side_centre_crop_outlines_background(voc_root):
    items = _items(voc_root, protocol="sea")
    # a: 375x500 -> short side 473, long int(500 * 473 / 375) = 630; left = round(157 / 2) = 78 (half to even)
    # output column c reads resized column c + 78 = source x floor((c + 78.5) * 500 / 630): band 2 (x >= 100)
    # starts at c = 48; rows: top 0, source row 10 (the outline) lands on row 13 only (floor((r + .5) * 375 / 473))
    a = items["a"]["label"]
    assert a.shape == (473, 473) and items["a"]["image"].shape == (3, 473, 473)
    assert _first_column(a[0], 2) == 48 and int(a[0, 47]) == 1
    assert (a[13] == 0).all(), "the outline counts as background under the SEA code's VOC loader"
    assert int(a[12, 0]) == 1 and int(a[14, 0]) == 1
    assert not (a == IGNORE_INDEX).any()
    # b: 500x333 -> short side 473 (width), long int(500 * 473 / 333) = 710, top = round(237 / 2) = 118 (half to
    # even); columns: source x floor((c + .5) * 333 / 473): band 2 from c = 142; the outline (row 10) is cropped away
    b = items["b"]["label"]
    assert b.shape == (473, 473)
    assert _first_column(b[0], 2) == 142 and int(b[0, 141]) == 1
    assert not (b == 0).any() and not (b == IGNORE_INDEX).any()
    # c: already 473x473: unchanged (outline row 10 becomes background)
    c = items["c"]["label"]
    expected = torch.from_numpy(band_label(473, 473).astype(np.int64))
    expected[OUTLINE] = 0
    assert torch.equal(c, expected)
    # the image is cut at the same place: red is 40 x band inside a band (JPEG quality 100 keeps flat blocks)
    red = (items["a"]["image"][0, 200] * 255).round()
    assert abs(float(red[20]) - 40) <= 1 and abs(float(red[100]) - 80) <= 1


def test_sea_protocol_outlines_can_be_ignored(voc_root):
    a = _items(voc_root, protocol="sea", outlines="ignore")["a"]["label"]
    assert (a[13] == IGNORE_INDEX).all() and not (a == 0).any()


def test_thesis_protocol_short_side_512_whole_image(voc_root):
    items = _items(voc_root, protocol="thesis")
    # a: 375x500 -> (512, int(512 * 500 / 375) = 682); label by torch nearest: source x floor(c * 500 / 682),
    # band 2 from c = 137; outline row 10 -> rows r with floor(r * 375 / 512) = 10: 14, 15 (255 stays ignored)
    a = items["a"]["label"]
    assert a.shape == (512, 682) and items["a"]["image"].shape == (3, 512, 682)
    assert _first_column(a[0], 2) == 137 and int(a[0, 136]) == 1
    assert (a[14:16] == IGNORE_INDEX).all() and int(a[13, 0]) == 1 and int(a[16, 0]) == 1
    # b: 500x333 -> (int(512 * 500 / 333) = 768, 512); c: 473x473 -> 512x512
    assert items["b"]["label"].shape == (768, 512) and items["c"]["label"].shape == (512, 512)
    assert _first_column(items["b"]["label"][0], 2) == 154  # floor(c * 333 / 512) >= 100 from c = 154
    assert not (items["c"]["label"] == 0).any()


def test_pad_protocol_pads_with_ignored_labels(voc_root):
    items = _items(voc_root, protocol="pad")
    for name, (height, width) in SIZES.items():
        image, label = items[name]["image"], items[name]["label"]
        assert label.shape == (512, 512)
        assert torch.equal(label[:height, :width], torch.from_numpy(band_label(height, width).astype(np.int64)))
        assert (label[height:] == IGNORE_INDEX).all() and (label[:, width:] == IGNORE_INDEX).all()
        assert (image[:, height:] == 0).all() and (image[:, :, width:] == 0).all()


def test_protocol_transform_of_float_images_matches_pil():
    """The SEA protocol on an 8-bit image equals PIL's bilinear resize and the official crop box, bit for bit."""
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    image = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    label = torch.from_numpy(rng.integers(0, 21, size=(60, 90))).long()
    out, _ = EvalProtocol("sea", 47)(image, label, torch.Generator())
    # 60x90 -> short 47, long int(90 * 47 / 60) = 70; left = round(23 / 2) = round(11.5) = 12
    reference = np.asarray(Image.fromarray(array).resize((70, 47), Image.Resampling.BILINEAR))[:, 12:59]
    assert torch.equal((out * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(reference.copy()))


def test_zoo_entry_picks_its_protocol_and_an_override_wins():
    cfg = compose_config("evaluate", ["model=zoo/pirat-upernet-convnext-t-voc", "dataset=pascal_voc"])
    assert resolve_protocol(cfg.dataset, cfg.model.zoo) == ("sea", "background")
    cfg = compose_config("evaluate", ["model=zoo/mmseg-deeplabv3plus-r50-cityscapes", "dataset=cityscapes"])
    assert resolve_protocol(cfg.dataset, cfg.model.zoo) == ("thesis", "ignore")
    cfg = compose_config("evaluate", ["model=zoo/pirat-upernet-convnext-t-voc", "dataset=pascal_voc",
                                      "dataset.protocol=pad"])
    assert resolve_protocol(cfg.dataset, cfg.model.zoo) == ("pad", "ignore")
    cfg = compose_config("evaluate", ["dataset=pascal_voc"])
    assert resolve_protocol(cfg.dataset, cfg.model.get("zoo")) == ("pad", "ignore")


def test_paper_experiments_name_their_protocol():
    assert compose_config("evaluate", ["experiment=table3_robust_models"]).dataset.protocol == "sea"
    assert compose_config("evaluate", ["experiment=thesis_table5_1_minimal_norm"]).dataset.protocol == "thesis"
    train = compose_config("train", ["experiment=train_paper"])
    assert (train.dataset.augmentation, train.dataset.train_label_pad, train.dataset.protocol) == ("sea", 0, "sea")


@pytest.mark.parametrize("override, expected", [([], "sea"), (["dataset.protocol=thesis"], "thesis")])
def test_protocol_recorded_in_results_and_report(workdir, override, expected):
    """A model with a zoo entry (the shipped model, given the entry of a SEA-code model) is evaluated under the
    entry's protocol; an override is honoured; both are recorded in results.json and results.md."""
    (workdir / "conf" / "model").mkdir(parents=True)
    (workdir / "conf" / "model" / "embedded_zoo.yaml").write_text(
        "defaults:\n  - /model/embedded@_here_\n  - _self_\n\nname: embedded-zoo\n"
        "zoo: {dataset: synthetic, threat_model: Linf, protocol: sea}\n")
    zoo = [f"hydra.searchpath=[file://{workdir / 'conf'}]", "model=embedded_zoo"]
    run_in_process("evaluate", *zoo, *override, "max_images=2", "logger=none", "figure_images=0",
                   "run_name=protocol", cwd=workdir, check=True)
    run_dir = workdir / "outputs" / "evaluate" / "protocol"
    protocol = json.loads((run_dir / "results.json").read_text())["provenance"]["dataset"]["protocol"]
    assert protocol["name"] == expected and protocol["outlines"] == "ignore"
    assert f"- protocol: {expected}:" in (run_dir / "results.md").read_text()


def test_images_of_several_sizes_are_evaluated_one_at_a_time():
    from robust_seg.evaluation.driver import apply_protocol

    cfg = compose_config("evaluate", ["model=zoo/mmseg-deeplabv3plus-r50-voc", "dataset=pascal_voc"])
    assert cfg.batch_size == 8
    assert apply_protocol(cfg).protocol == "thesis" and cfg.batch_size == 1
    cfg = compose_config("evaluate", ["model=zoo/pirat-upernet-convnext-t-voc", "dataset=pascal_voc"])
    assert apply_protocol(cfg).protocol == "sea" and cfg.batch_size == 8  # every image 473x473: batches


def test_sea_training_augmentation_scales_the_short_side_and_pads_labels_with_background():
    label = torch.full((30, 60), 5, dtype=torch.long)
    image = torch.rand(3, 30, 60)
    # short side drawn from [int(40 * 1), int(40 * 1)] = 40 >= crop 40: 30x60 -> 40x80, no padding anywhere
    transform = SeaTrainTransform(40, 40, (1.0, 1.0), flip=False, gaussian_blur=False)
    out_image, out_label = transform(image, label, torch.Generator().manual_seed(0))
    assert out_image.shape == (3, 40, 40) and (out_label == 5).all()
    # short side 20 < crop 40: 30x60 -> 20x40, padded bottom with image 0 and label 0 (the official fill)
    transform = SeaTrainTransform(40, 40, (0.5, 0.5), flip=False, gaussian_blur=False)
    out_image, out_label = transform(image, label, torch.Generator().manual_seed(0))
    assert (out_label[:20] == 5).all() and (out_label[20:] == 0).all() and (out_image[:, 20:] == 0).all()
    # the project's 255 kept as an option
    transform = SeaTrainTransform(40, 40, (0.5, 0.5), flip=False, gaussian_blur=False, label_pad=IGNORE_INDEX)
    assert (transform(image, label, torch.Generator().manual_seed(0))[1][20:] == IGNORE_INDEX).all()


def test_sea_training_augmentation_blurs_before_the_crop(monkeypatch):
    """The official order: resize, pad, blur the whole padded image, then crop. With scripted draws (no flip,
    short side 24, blur with radius 0.8, crop at left 3, top 2) the output equals that order in PIL and differs
    from blurring the crop (pixels at the crop's edge see their neighbours outside it)."""
    import robust_seg.data.transforms as transforms
    from PIL import ImageFilter, ImageOps

    uniforms, integers = iter([0.9, 0.1, 0.8]), iter([24, 3, 2])
    monkeypatch.setattr(transforms, "_uniform", lambda generator: next(uniforms))
    monkeypatch.setattr(transforms, "_randint", lambda low, high, generator: next(integers))
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    image = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    out, label = SeaTrainTransform(24, 26, (0.5, 2.0))(image, torch.ones(20, 30, dtype=torch.long), None)
    resized = Image.fromarray(array).resize((36, 24), Image.Resampling.BILINEAR)  # 20x30: short 24, long 36
    padded = ImageOps.expand(resized, border=(0, 0, 0, 2), fill=0)  # height 24 < crop 26
    box = (3, 2, 29, 28)
    before = np.asarray(padded.filter(ImageFilter.GaussianBlur(radius=0.8)).crop(box))
    after = np.asarray(padded.crop(box).filter(ImageFilter.GaussianBlur(radius=0.8)))
    measured = (out * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(measured, before) and not np.array_equal(measured, after)
    assert (label[22:] == 0).all() and (label[:22] == 1).all()  # padded rows (24..25 before the crop at top 2)


def _segmenter():
    from robust_seg.models import build_model

    cfg = compose_config("evaluate", ["model=small_segmenter_vit", "model.random_weights=true"]).model
    torch.manual_seed(0)
    return build_model(cfg, 6).eval()


@pytest.mark.parametrize("size", [(37, 45), (50, 29), (63, 63)])
def test_segmenter_pads_upsamples_to_the_padded_size_then_crops(size):
    model = _segmenter()
    images = torch.rand(2, 3, *size)
    height, width = size
    padded_h, padded_w = -(-height // 8) * 8, -(-width // 8) * 8  # patch size 8
    with torch.no_grad():
        inputs = F.pad((images - model.mean) / model.std, (0, padded_w - width, 0, padded_h - height))
        masks = model.segmentor.decode_head(model.segmentor.extract_feat(inputs))
        reference = F.interpolate(masks, size=(padded_h, padded_w), mode="bilinear",
                                  align_corners=False)[..., :height, :width]
        logits = model(images)
        straight = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    assert torch.allclose(logits, reference, atol=1e-5)
    assert not torch.allclose(logits, straight, atol=1e-3)  # the order matters: a straight resize differs


def test_duplicate_radii_are_refused():
    for value in ("[8/255,8/255]", "[0.0314,8/255]", ["0", "4/255", "4/255"]):
        with pytest.raises(ConfigError, match="listed twice"):
            parse_radii(value)
    assert [r.value for r in parse_radii("[0.25/255,0.5/255,8/255]")] == pytest.approx([0.25 / 255, 0.5 / 255, 8 / 255])


def test_duplicate_radii_refused_before_any_image_is_evaluated(workdir):
    result = run_in_process("evaluate", "attack=apgd", "attack.eps=[8/255,8/255]", "max_images=2",
                            "logger=none", cwd=workdir)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == ("error: attack.eps: 8/255 is listed twice; each image is "
                                                      "evaluated once per radius: remove one")
    assert "Traceback" not in result.stderr
