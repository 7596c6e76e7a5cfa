"""Common dataset machinery: item format, transforms, seeded per-item randomness, file reading."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from robust_seg import IGNORE_INDEX
from robust_seg.data.errors import DatasetError

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], Tuple[torch.Tensor, torch.Tensor]]


def seeded_generator(*keys: int) -> torch.Generator:
    """A ``torch.Generator`` whose state is a hash of the non-negative integers ``keys``."""
    state = np.random.SeedSequence([int(key) for key in keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class SegmentationDataset(Dataset):
    """Base of all datasets: ``item = {"image", "label", "index", "name"}``.

    ``image`` is float32 (3, H, W) in [0, 1], ``label`` int64 (H, W) with 255 = ignore.
    The transform draws its randomness from a generator seeded by
    (seed, epoch, index), so a sample never depends on the worker count or on the
    order of access; call :meth:`set_epoch` at every epoch (``loaders.set_epoch``
    does it together with the sampler). Labels outside {0..K-1, 255} raise
    ``DatasetError`` (e.g. ADE20K annotations converted with reduce_zero_label).
    """

    def __init__(self, *, names: Sequence[str], class_names: Sequence[str], transform: Transform,
                 seed: int) -> None:
        self.names = list(names)
        self.class_names = tuple(class_names)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Untransformed (image, label) of sample ``index``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Dict[str, object]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, label = self.load(index)
        invalid = (label >= self.num_classes) & (label != IGNORE_INDEX) | (label < 0)
        if bool(invalid.any()):
            raise DatasetError(f"label of {self.names[index]!r} has values {sorted(set(label[invalid].tolist()))[:5]} "
                               f"outside 0..{self.num_classes - 1} and {IGNORE_INDEX}")
        image, label = self.transform(image, label, seeded_generator(self.seed, self.epoch, index))
        return {"image": image, "label": label, "index": index, "name": self.names[index]}


def read_image(path: Path) -> torch.Tensor:
    """RGB image file -> float32 (3, H, W) in [0, 1]; a missing or unreadable file is a one-line error naming it."""
    try:
        with Image.open(path) as file:
            array = np.asarray(file.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"cannot read image {path}: {str(error).splitlines()[0] if str(error) else type(error).__name__} "
                           "(replace the file or remove it from the split)") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def read_label(path: Path) -> torch.Tensor:
    """Label PNG (palette "P" or grey "L": the stored index is the class) -> int64 (H, W)."""
    try:
        with Image.open(path) as file:
            if file.mode not in ("P", "L"):
                raise DatasetError(f"label {path} has PIL mode {file.mode!r}; expected a palette (P) or grey (L) PNG "
                                   "storing class indices")
            array = np.asarray(file, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"cannot read label {path}: {str(error).splitlines()[0] if str(error) else type(error).__name__} "
                           "(replace the file or remove it from the split)") from None
    return torch.from_numpy(array.astype(np.int64))


class FileSegmentationDataset(SegmentationDataset):
    """Samples read from (image path, label path) pairs."""

    def __init__(self, *, files: Sequence[Tuple[Path, Path]], names: Sequence[str], class_names: Sequence[str],
                 transform: Transform, seed: int) -> None:
        super().__init__(names=names, class_names=class_names, transform=transform, seed=seed)
        self.files = list(files)

    def load(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.files[index]
        image, label = read_image(image_path), read_label(label_path)
        if image.shape[-2:] != label.shape:
            raise DatasetError(f"image {image_path} is {tuple(image.shape[-2:])} but label {label_path} is "
                               f"{tuple(label.shape)}")
        return image, label
