"""``python -m robust_seg.data.prepare <dataset> --archives DIR``: check downloaded archives, lay them out for the loaders.

The datasets cannot be downloaded for the user (licences, logins), so this command starts from the archives
the user downloaded from the official pages (each listed with its address by ``--list``). It

1. looks for every archive of the dataset in ``--archives`` and says exactly which are missing and where to get
   them;
2. checks each archive's published checksum (``--no-checksum`` skips it, e.g. for a re-packed copy);
3. unpacks into a temporary directory beside the target (path traversal refused), converts what the loaders
   need (SBD ``.mat`` labels to PNG and the 10582-image ``aug.txt`` list as MMSegmentation's
   ``voc_aug.py``; Cityscapes ``labelIds`` to ``labelTrainIds`` as cityscapesScripts), validates the result
   with the loaders themselves, and only then renames it into place, so an interrupted run leaves nothing
   half-written;
4. prints the ``dataset.root`` to use and the image count of each split.

A dataset already in place is validated and left alone (the command is idempotent). Problems are one line on
stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tarfile
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np
from PIL import Image

from robust_seg.errors import EXIT_USER_ERROR, one_line
from robust_seg.data.errors import DatasetError


class PrepareError(DatasetError):
    """An archive is missing, corrupted or unsafe, or a prepared dataset is unusable."""


@dataclass(frozen=True)
class Archive:
    """One file the user downloads: its name, published checksum and where to get it."""

    name: str
    algorithm: str  # "md5" or "sha1", as published
    checksum: str
    source: str


@dataclass(frozen=True)
class DatasetRecipe:
    """The archives of a dataset, where it goes below the data directory and the splits the loaders read."""

    name: str
    archives: Tuple[Archive, ...]
    target: str  # relative to the data directory; equals the root of configs/dataset/<name>.yaml
    splits: Dict[str, int]  # split -> number of images of the full release
    note: str = ""


RECIPES: Dict[str, DatasetRecipe] = {
    "pascal_voc": DatasetRecipe(
        name="pascal_voc",
        archives=(
            Archive("VOCtrainval_11-May-2012.tar", "md5", "6cd6e144f989b92b3379bac3b3de84fd",
                    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"),
            Archive("benchmark.tgz", "md5", "82b4d87ceb2ed10f6038a1cba92111cb",
                    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
                    "benchmark.tgz (SBD)"),
        ),
        target="VOCdevkit/VOC2012",
        splits={"train_aug": 10582, "val": 1449, "sbd_train": 8498},
    ),
    "ade20k": DatasetRecipe(
        name="ade20k",
        archives=(
            Archive("ADEChallengeData2016.zip", "sha1", "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
                    "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"),
        ),
        target="ADEChallengeData2016",
        splits={"training": 20210, "validation": 2000},
    ),
    "cityscapes": DatasetRecipe(
        name="cityscapes",
        archives=(
            Archive("gtFine_trainvaltest.zip", "md5", "4237c19de34c8a376e9ba46b495d6f66",
                    "https://www.cityscapes-dataset.com/file-handling/?packageID=1 (after login)"),
            Archive("leftImg8bit_trainvaltest.zip", "md5", "0a6e97e94b616a514066c9e2adb0c97f",
                    "https://www.cityscapes-dataset.com/file-handling/?packageID=3 (after login)"),
        ),
        target="cityscapes",
        splits={"train": 2975, "val": 500},
    ),
}

# cityscapesScripts' labels.py: labelId -> trainId (19 classes; every other id, incl. license plate, is ignored)
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                        26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def data_directory() -> Path:
    """``$ROBUST_SEG_DATA`` or ``./data``, as in ``configs/dataset/*.yaml``."""
    return Path(os.environ.get("ROBUST_SEG_DATA", "data"))


# ----------------------------------------------------------------------------------------------- archives
def file_checksum(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_archives(recipe: DatasetRecipe, directory: Path, check: bool,
                  report: Callable[[str], None]) -> Dict[str, Path]:
    """The path of each archive of ``recipe`` in ``directory``; raises naming every missing or corrupted one."""
    found, missing, corrupted = {}, [], []
    for archive in recipe.archives:
        path = directory / archive.name
        if not path.is_file():
            missing.append(archive)
            report(f"  missing   {archive.name}  <- {archive.source}")
            continue
        if check:
            actual = file_checksum(path, archive.algorithm)
            if actual != archive.checksum:
                corrupted.append(archive.name)
                report(f"  corrupted {archive.name}: {archive.algorithm} {actual}, published {archive.checksum}")
                continue
            report(f"  ok        {archive.name} ({archive.algorithm} matches)")
        else:
            report(f"  found     {archive.name} (checksum not checked)")
        found[archive.name] = path
    if missing or corrupted:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(a.name for a in missing)} in {directory} (download from "
                         f"{'; '.join(a.source for a in missing)})")
        if corrupted:
            parts.append(f"checksum mismatch of {', '.join(corrupted)} (download again)")
        raise PrepareError(f"{recipe.name}: " + "; ".join(parts))
    return found


def _safe_member_path(destination: Path, name: str) -> Path:
    target = (destination / name).resolve()
    if not target.is_relative_to(destination.resolve()):
        raise PrepareError(f"archive member {name!r} points outside the extraction directory: refused")
    return target


def unpack(archive: Path, destination: Path, members: Callable[[str], bool] = lambda name: True) -> None:
    """Extract the members of a tar or zip archive whose name passes ``members``; unsafe paths are refused."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                names = [name for name in bundle.namelist() if members(name)]
                for name in names:
                    _safe_member_path(destination, name)
                bundle.extractall(destination, names)
            return
        with tarfile.open(archive) as bundle:
            chosen = [member for member in bundle.getmembers() if members(member.name)]
            for member in chosen:
                _safe_member_path(destination, member.name)
            bundle.extractall(destination, chosen, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise PrepareError(f"cannot unpack {archive.name}: {error} (download it again)") from error


def _parallel_map(function, items: Sequence, workers: int) -> None:
    if workers <= 1 or len(items) < 64:
        for item in items:
            function(item)
        return
    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(function, items, chunksize=32):
            pass


# ----------------------------------------------------------------------------------------------- conversions
def sbd_mat_to_png(paths: Tuple[Path, Path]) -> None:
    """SBD ``cls/<id>.mat`` (struct ``GTcls.Segmentation``, 0..20) -> grey PNG, as MMSeg's voc_aug converter."""
    from scipy.io import loadmat

    source, target = paths
    mask = loadmat(str(source))["GTcls"][0]["Segmentation"][0].astype(np.uint8)
    Image.fromarray(mask, mode="L").save(target)


def voc_png_to_grey(paths: Tuple[Path, Path]) -> None:
    """VOC ``SegmentationClass/<id>.png`` (palette indices 0..20, 255) -> grey PNG of the same indices."""
    source, target = paths
    Image.fromarray(np.asarray(Image.open(source)), mode="L").save(target)


def cityscapes_train_ids(paths: Tuple[Path, Path]) -> None:
    """``*_gtFine_labelIds.png`` -> ``*_gtFine_labelTrainIds.png`` (19 classes, 255 ignored)."""
    source, target = paths
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        table[label_id] = train_id
    Image.fromarray(table[np.asarray(Image.open(source))], mode="L").save(target)


def _read_ids(path: Path) -> List[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _write_ids(path: Path, ids: Iterable[str]) -> None:
    path.write_text("".join(f"{i}\n" for i in ids))


def build_pascal_voc(archives: Dict[str, Path], work: Path, workers: int) -> None:
    """VOC 2012 + SBD: SegmentationClassAug for every train_aug image, ``aug.txt`` (10582 ids), ``sbd_train.txt``.

    ``aug.txt`` = (VOC train u SBD train u SBD val) minus VOC val, sorted (MMSeg's ``voc_aug.py``). Labels of
    SegmentationClassAug come from SBD where SBD annotates the image, else from VOC's own SegmentationClass, so
    every listed image has a label. ``sbd_train.txt`` is SBD's train list as released (8498 ids, the training
    set the SEA paper reports; it overlaps VOC val, which is why the default is ``train_aug``).
    """
    unpack(archives["VOCtrainval_11-May-2012.tar"], work, lambda name: "/VOC2012/" in name
           and any(part in name for part in ("/JPEGImages/", "/SegmentationClass/", "/ImageSets/Segmentation/")))
    unpack(archives["benchmark.tgz"], work, lambda name: "/dataset/" in name
           and ("/cls/" in name or name.endswith(("train.txt", "val.txt"))))
    voc = work / "VOCdevkit" / "VOC2012"
    sbd = work / "benchmark_RELEASE" / "dataset"
    if not (voc / "ImageSets" / "Segmentation" / "val.txt").is_file():
        raise PrepareError("VOCtrainval_11-May-2012.tar has no VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt "
                           "(not the VOC 2012 trainval archive?)")
    if not (sbd / "train.txt").is_file() or not (sbd / "cls").is_dir():
        raise PrepareError("benchmark.tgz has no benchmark_RELEASE/dataset/{cls/,train.txt} (not the SBD archive?)")
    lists = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = _read_ids(lists / "train.txt"), _read_ids(lists / "val.txt")
    sbd_train, sbd_val = _read_ids(sbd / "train.txt"), _read_ids(sbd / "val.txt")
    aug = sorted(set(voc_train + sbd_train + sbd_val) - set(voc_val))
    out = voc / "SegmentationClassAug"
    out.mkdir()
    from_sbd = [(sbd / "cls" / f"{i}.mat", out / f"{i}.png") for i in aug if (sbd / "cls" / f"{i}.mat").is_file()]
    covered = {target.stem for _, target in from_sbd}
    from_voc = [(voc / "SegmentationClass" / f"{i}.png", out / f"{i}.png") for i in aug if i not in covered]
    unlabelled = [source.stem for source, _ in from_voc if not source.is_file()]
    if unlabelled:
        raise PrepareError(f"{len(unlabelled)} train_aug images have neither an SBD nor a VOC label, "
                           f"e.g. {unlabelled[0]} (incomplete archives?)")
    _parallel_map(sbd_mat_to_png, from_sbd, workers)
    _parallel_map(voc_png_to_grey, from_voc, workers)
    _write_ids(lists / "aug.txt", aug)
    _write_ids(lists / "sbd_train.txt", sbd_train)


def build_ade20k(archives: Dict[str, Path], work: Path, workers: int) -> None:
    """ADEChallengeData2016 as released (labels 0..150 used as stored)."""
    unpack(archives["ADEChallengeData2016.zip"], work, lambda name: name.startswith("ADEChallengeData2016/"))


def build_cityscapes(archives: Dict[str, Path], work: Path, workers: int) -> None:
    """leftImg8bit and gtFine (train, val) with ``*_gtFine_labelTrainIds.png`` written from ``*_labelIds.png``."""
    root = work / "cityscapes"

    def train_or_val(kind: str, suffix: str) -> Callable[[str], bool]:
        return lambda name: name.split("/")[:1] == [kind] and name.split("/")[1:2] in (["train"], ["val"]) \
            and name.endswith(suffix)

    unpack(archives["gtFine_trainvaltest.zip"], root, train_or_val("gtFine", "_gtFine_labelIds.png"))
    unpack(archives["leftImg8bit_trainvaltest.zip"], root, train_or_val("leftImg8bit", "_leftImg8bit.png"))
    pairs = [(path, path.with_name(path.name.replace("_labelIds.png", "_labelTrainIds.png")))
             for path in sorted((root / "gtFine").glob("*/*/*_gtFine_labelIds.png"))]
    _parallel_map(cityscapes_train_ids, pairs, workers)


BUILDERS = {"pascal_voc": build_pascal_voc, "ade20k": build_ade20k, "cityscapes": build_cityscapes}


# ----------------------------------------------------------------------------------------------- validation
def split_sizes(name: str, root: Path, splits: Iterable[str]) -> Dict[str, int]:
    """Image count of each split as the loaders see it; raises the loader's one-line error when malformed."""
    from robust_seg.data.ade20k import ade20k_files
    from robust_seg.data.cityscapes import cityscapes_files
    from robust_seg.data.voc import voc_files

    files = {"pascal_voc": voc_files, "ade20k": ade20k_files, "cityscapes": cityscapes_files}[name]
    return {split: len(files(str(root), split)[1]) for split in splits}


def prepare(name: str, archives: Path | None, data: Path, *, check: bool = True, workers: int = 1,
            report: Callable[[str], None] = print) -> Tuple[Path, Dict[str, int]]:
    """Lay out dataset ``name`` below ``data`` from the archives in ``archives``; the root and the split sizes."""
    if name not in RECIPES:
        raise PrepareError(f"unknown dataset {name!r} (choose from: {', '.join(RECIPES)})")
    recipe = RECIPES[name]
    root = data / recipe.target
    if root.exists():
        try:
            sizes = split_sizes(name, root, recipe.splits)
        except DatasetError as error:
            raise PrepareError(f"{root} exists but is not usable ({one_line(error)}); move it away and run again") \
                from error
        report(f"{name}: already prepared at {root}")
        return root, sizes
    if archives is None:
        raise PrepareError(f"{name} is not at {root}: give --archives DIR holding "
                           f"{', '.join(a.name for a in recipe.archives)} (see --list)")
    report(f"{name}: archives in {archives}")
    found = find_archives(recipe, archives, check, report)
    top = Path(recipe.target).parts[0]
    if (data / top).exists():
        raise PrepareError(f"{data / top} exists but holds no {recipe.target}; move it away and run again")
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".prepare-{name}-", dir=data) as temporary:
        report(f"{name}: unpacking and converting ...")
        BUILDERS[name](found, Path(temporary), workers)
        try:
            sizes = split_sizes(name, Path(temporary) / recipe.target, recipe.splits)
        except DatasetError as error:
            raise PrepareError(f"the unpacked archives are not usable ({one_line(error)})") from error
        os.replace(Path(temporary) / top, data / top)
    return root, sizes


def describe(recipe: DatasetRecipe, root: Path, sizes: Dict[str, int]) -> List[str]:
    lines = [f"{recipe.name}: ready at {root}"]
    for split, count in sizes.items():
        full = recipe.splits[split]
        lines.append(f"  {split:10s} {count:6d} images" + ("" if count == full else f"  (the full release has {full})"))
    lines.append(f"use: dataset={recipe.name} dataset.root={root}"
                 + ("" if root == Path("data") / recipe.target else "  (or set ROBUST_SEG_DATA)"))
    return lines


def list_archives() -> List[str]:
    lines = []
    for recipe in RECIPES.values():
        lines.append(f"{recipe.name} -> $ROBUST_SEG_DATA/{recipe.target}")
        lines += [f"  {a.name}  {a.algorithm} {a.checksum}  {a.source}" for a in recipe.archives]
    return lines


def main(argv: List[str] | None = None) -> None:

    parser = argparse.ArgumentParser(prog="python -m robust_seg.data.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", choices=sorted(RECIPES), help="the dataset to lay out")
    parser.add_argument("--archives", type=Path, help="directory holding the downloaded archives")
    parser.add_argument("--data", type=Path, default=None,
                        help="data directory (default: $ROBUST_SEG_DATA or ./data, as the dataset configs)")
    parser.add_argument("--no-checksum", action="store_true", help="do not check the published checksums")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="conversion processes")
    parser.add_argument("--list", action="store_true", help="list the archives of every dataset and exit")
    args = parser.parse_args(argv)
    if args.list or args.dataset is None:
        print("\n".join(list_archives()))
        return
    data = args.data if args.data is not None else data_directory()
    try:
        root, sizes = prepare(args.dataset, args.archives, data, check=not args.no_checksum, workers=args.workers)
    except DatasetError as error:
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    print("\n".join(describe(RECIPES[args.dataset], root, sizes)))


if __name__ == "__main__":
    main()
