"""``python -m robust_seg.data.prepare``: small fake archives in the official layouts of PASCAL-VOC + SBD, ADE20K
and Cityscapes are checked, unpacked and converted into the layout the loaders read."""
from __future__ import annotations

import dataclasses
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robust_seg.data import prepare as prep


def _png(array: np.ndarray, palette: bool = False) -> bytes:
    image = Image.fromarray(array.astype(np.uint8), mode="L" if not palette else "P")
    if palette:
        image.putpalette([value for index in range(256) for value in (index, 255 - index, 0)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), 120, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _mat(array: np.ndarray) -> bytes:
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, {"GTcls": {"Segmentation": array.astype(np.uint8), "Boundaries": np.zeros(1)}})
    return buffer.getvalue()


def _tar(path: Path, files: dict[str, bytes], mode: str = "w") -> None:
    with tarfile.open(path, mode) as bundle:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)


def _label(value: int) -> np.ndarray:
    label = np.full((6, 8), value, np.uint8)
    label[0, 0] = 255
    return label


def _accept_checksums(monkeypatch, name: str, directory: Path) -> None:
    """The recipe of ``name`` with the checksums of the fake archives (the published ones belong to the real files)."""
    recipe = prep.RECIPES[name]
    archives = tuple(dataclasses.replace(a, checksum=prep.file_checksum(directory / a.name, a.algorithm))
                     for a in recipe.archives)
    monkeypatch.setitem(prep.RECIPES, name, dataclasses.replace(recipe, archives=archives))


def write_voc_archives(directory: Path) -> None:
    voc = "VOCdevkit/VOC2012"
    files = {f"{voc}/JPEGImages/{i}.jpg": _jpg() for i in ("a", "b", "c", "d")}
    files.update({f"{voc}/SegmentationClass/{i}.png": _png(_label(k + 1), palette=True)
                  for k, i in enumerate(("a", "b", "c"))})
    files[f"{voc}/ImageSets/Segmentation/train.txt"] = b"a\nb\n"
    files[f"{voc}/ImageSets/Segmentation/val.txt"] = b"c\n"
    files[f"{voc}/Annotations/a.xml"] = b"<annotation/>"  # detection files are left out
    _tar(directory / "VOCtrainval_11-May-2012.tar", files)
    sbd = "benchmark_RELEASE/dataset"
    _tar(directory / "benchmark.tgz", {f"{sbd}/cls/a.mat": _mat(_label(7)), f"{sbd}/cls/c.mat": _mat(_label(9)),
                                      f"{sbd}/cls/d.mat": _mat(_label(11)), f"{sbd}/train.txt": b"a\nd\n",
                                      f"{sbd}/val.txt": b"c\n"}, mode="w:gz")


def test_pascal_voc_sbd_layout_labels_and_lists(tmp_path, monkeypatch):
    write_voc_archives(tmp_path)
    _accept_checksums(monkeypatch, "pascal_voc", tmp_path)
    data = tmp_path / "data"
    root, sizes = prep.prepare("pascal_voc", tmp_path, data, report=lambda line: None)
    assert root == data / "VOCdevkit" / "VOC2012"
    assert sizes == {"train_aug": 3, "val": 1, "sbd_train": 2}
    lists = root / "ImageSets" / "Segmentation"
    assert lists.joinpath("aug.txt").read_text().split() == ["a", "b", "d"]  # (VOC train u SBD) - VOC val
    assert lists.joinpath("sbd_train.txt").read_text().split() == ["a", "d"]
    aug = root / "SegmentationClassAug"
    assert np.array_equal(np.asarray(Image.open(aug / "a.png")), _label(7))  # SBD label wins where SBD has one
    assert np.array_equal(np.asarray(Image.open(aug / "b.png")), _label(2))  # VOC palette indices otherwise
    assert Image.open(aug / "b.png").mode == "L"
    assert not (root / "Annotations").exists()
    assert [p.name for p in data.iterdir()] == ["VOCdevkit"]  # no temporary directory left, no SBD leftovers

    from robust_seg.data import build_dataset  # the loader reads the prepared layout
    from tests.conftest import compose_config

    cfg = compose_config("evaluate", ["dataset=pascal_voc", f"dataset.root={root}"])
    dataset = build_dataset(cfg.dataset, "train_aug", train=False)
    assert len(dataset) == 3 and set(np.unique(dataset.load(2)[1].numpy())) == {11, 255}

    lines = []
    assert prep.prepare("pascal_voc", None, data, report=lines.append)[1] == sizes  # idempotent
    assert lines == ["pascal_voc: already prepared at " + str(root)]


def test_missing_and_corrupted_archives_are_named_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    write_voc_archives(tmp_path)
    data = tmp_path / "data"
    with pytest.raises(prep.PrepareError, match=r"checksum mismatch of VOCtrainval_11-May-2012.tar, benchmark.tgz"):
        prep.prepare("pascal_voc", tmp_path, data, report=lambda line: None)
    (tmp_path / "benchmark.tgz").unlink()
    with pytest.raises(SystemExit) as stop:
        prep.main(["pascal_voc", "--archives", str(tmp_path), "--data", str(data)])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing benchmark.tgz" in error and "semantic_contours/benchmark.tgz" in error
    assert "VOCtrainval" in error  # corrupted too
    assert not data.exists()


def test_truncated_and_unsafe_archives_are_refused(tmp_path, monkeypatch):
    write_voc_archives(tmp_path)
    whole = (tmp_path / "benchmark.tgz").read_bytes()
    (tmp_path / "benchmark.tgz").write_bytes(whole[: len(whole) // 2])
    _accept_checksums(monkeypatch, "pascal_voc", tmp_path)
    data = tmp_path / "data"
    with pytest.raises(prep.PrepareError, match="cannot unpack benchmark.tgz"):
        prep.prepare("pascal_voc", tmp_path, data, report=lambda line: None)
    assert list(data.iterdir()) == []

    _zip(tmp_path / "ADEChallengeData2016.zip", {"ADEChallengeData2016/../../escape.txt": b"x"})
    _accept_checksums(monkeypatch, "ade20k", tmp_path)
    with pytest.raises(prep.PrepareError, match="points outside the extraction directory"):
        prep.prepare("ade20k", tmp_path, data, report=lambda line: None)
    assert not (tmp_path / "escape.txt").exists() and list(data.iterdir()) == []


def test_ade20k_and_an_unusable_existing_root(tmp_path, monkeypatch):
    base = "ADEChallengeData2016"
    files = {f"{base}/objectInfo150.txt": b"..."}
    for split, names in (("training", ("t1", "t2")), ("validation", ("v1",))):
        for name in names:
            files[f"{base}/images/{split}/ADE_{name}.jpg"] = _jpg()
            files[f"{base}/annotations/{split}/ADE_{name}.png"] = _png(_label(150))
    _zip(tmp_path / "ADEChallengeData2016.zip", files)
    _accept_checksums(monkeypatch, "ade20k", tmp_path)
    data = tmp_path / "data"
    root, sizes = prep.prepare("ade20k", tmp_path, data, report=lambda line: None)
    assert sizes == {"training": 2, "validation": 1} and root == data / base
    text = "\n".join(prep.describe(prep.RECIPES["ade20k"], root, sizes))
    assert "(the full release has 20210)" in text and f"dataset=ade20k dataset.root={root}" in text

    (root / "annotations" / "validation" / "ADE_v1.png").unlink()
    with pytest.raises(prep.PrepareError, match=r"exists but is not usable \(ADE20K malformed \(1 annotations missing"):
        prep.prepare("ade20k", tmp_path, data, report=lambda line: None)


def test_cityscapes_label_ids_become_train_ids(tmp_path, monkeypatch):
    label_ids = np.array([[7, 26, 0, 33], [24, 9, 1, 23]], np.uint8)  # road, car, unlabeled, bicycle / ...
    train_ids = np.array([[0, 13, 255, 18], [11, 255, 255, 10]], np.uint8)
    gt, left = {}, {"leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png": _png(label_ids)}
    for split, city in (("train", "aachen"), ("train", "bremen"), ("val", "lindau")):
        stem = f"{split}/{city}/{city}_000000_000019"
        gt[f"gtFine/{stem}_gtFine_labelIds.png"] = _png(label_ids)
        gt[f"gtFine/{stem}_gtFine_color.png"] = _png(label_ids)
        left[f"leftImg8bit/{stem}_leftImg8bit.png"] = _png(np.stack([label_ids] * 3, -1).reshape(2, 4 * 3)[:, :4])
    _zip(tmp_path / "gtFine_trainvaltest.zip", gt)
    _zip(tmp_path / "leftImg8bit_trainvaltest.zip", left)
    _accept_checksums(monkeypatch, "cityscapes", tmp_path)
    root, sizes = prep.prepare("cityscapes", tmp_path, tmp_path / "data", report=lambda line: None)
    assert sizes == {"train": 2, "val": 1}
    written = root / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelTrainIds.png"
    assert np.array_equal(np.asarray(Image.open(written)), train_ids)
    assert not (root / "leftImg8bit" / "test").exists()


def test_list_names_every_archive_with_checksum_and_source(capsys):
    prep.main(["--list"])
    out = capsys.readouterr().out
    for recipe in prep.RECIPES.values():
        for archive in recipe.archives:
            assert f"{archive.name}  {archive.algorithm} {archive.checksum}" in out
