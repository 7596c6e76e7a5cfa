"""A user's own evaluation data for ``rs.evaluate(model, data)``: an ``(images, labels)`` pair of tensors, a
``Dataset`` or a ``DataLoader``, served to the evaluation driver as the configured datasets are (items
``{"image", "label", "index", "name"}``), so that the results, diagnostics and reports are those of the CLI.

- Images: float (3, H, W) in [0, 1] (per item; a tensor pair is (N, 3, H, W)). Labels: integer (H, W), classes
  0..K-1 and an ignore index (default 255; another one is mapped to 255, the project's).
- A Dataset's items are ``(image, label)`` pairs or dicts with ``image`` and ``label`` (``name`` optional).
- A DataLoader contributes its dataset and batch size. Its sampler and ``collate_fn`` are not used: an evaluation
  reads the images in index order, each seeded by its index (as every evaluation is), so that a run resumes and
  shards exactly.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from robust_seg import IGNORE_INDEX
from robust_seg.data.errors import DatasetError


class TensorPairs(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dim() != 4 or labels.dim() != 3 or images.shape[0] != labels.shape[0]:
            raise DatasetError(f"data=(images, labels) must be tensors (N, 3, H, W) and (N, H, W), got "
                               f"{tuple(images.shape)} and {tuple(labels.shape)}")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


class UserData(Dataset):
    """The items of ``source`` checked and in the driver's form; ``name``, ``class_names``, ``batch_size`` (None:
    the config's) and ``fingerprint`` (a content hash for tensors, else the type and length) describe it."""

    def __init__(self, source: Dataset, name: str, ignore_index: int = IGNORE_INDEX,
                 class_names: Sequence[str] | None = None, batch_size: int | None = None, fingerprint: str = ""):
        self.source, self.name, self.ignore_index = source, name, ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        self.batch_size, self.fingerprint = batch_size, fingerprint

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.source[index]
        if isinstance(item, dict):
            if "image" not in item or "label" not in item:
                raise DatasetError(f"item {index} of the data is a dict without 'image' and 'label' "
                                   f"(keys: {', '.join(map(str, item))})")
            image, label, name = item["image"], item["label"], str(item.get("name", index))
        elif isinstance(item, (tuple, list)) and len(item) >= 2:
            (image, label), name = item[:2], str(index)
        else:
            raise DatasetError(f"item {index} of the data is a {type(item).__name__}: give (image, label) pairs or "
                               "dicts with 'image' and 'label'")
        return {"image": self._image(image, index), "label": self._label(label, image, index), "index": index,
                "name": name}

    @staticmethod
    def _image(image, index: int) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 \
                or not image.is_floating_point():
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise DatasetError(f"image {index} must be a float tensor (3, H, W) in [0, 1], got {shape}"
                               f"{' ' + str(image.dtype) if isinstance(image, torch.Tensor) else ''}")
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:
            hint = " (divide 8-bit images by 255)" if high > 1.5 else ""
            raise DatasetError(f"image {index} has values in [{low:g}, {high:g}], not in [0, 1]{hint}")
        return image.float()

    def _label(self, label, image: torch.Tensor, index: int) -> torch.Tensor:
        if not isinstance(label, torch.Tensor) or label.is_floating_point() or label.dim() != 2 \
                or tuple(label.shape) != tuple(image.shape[-2:]):
            shape = tuple(label.shape) if isinstance(label, torch.Tensor) else type(label).__name__
            raise DatasetError(f"label {index} must be an integer tensor (H, W) = {tuple(image.shape[-2:])} "
                               f"matching its image, got {shape}")
        label = label.long()
        if self.ignore_index != IGNORE_INDEX:
            label = torch.where(label == self.ignore_index, torch.full_like(label, IGNORE_INDEX), label)
        return label


def user_data(data: Any, ignore_index: int = IGNORE_INDEX, class_names: Sequence[str] | None = None) -> UserData:
    """``data`` (tensors, Dataset or DataLoader) as :class:`UserData`."""
    batch_size = None
    if isinstance(data, DataLoader):
        batch_size, data = data.batch_size, data.dataset
    if isinstance(data, IterableDataset):
        raise DatasetError("an iterable dataset has no index to seed and resume by: give a map-style Dataset "
                           "(with __getitem__ and __len__) or (images, labels) tensors")
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        images, labels = data
        digest = hashlib.sha256()
        for tensor in (images, labels):
            digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return UserData(TensorPairs(images, labels), f"tensors ({images.shape[0]} images)", ignore_index,
                        class_names, batch_size, f"sha256:{digest.hexdigest()}")
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return UserData(data, f"python:{type(data).__name__} ({len(data)} images)", ignore_index, class_names,
                        batch_size, f"{type(data).__module__}.{type(data).__qualname__}[{len(data)}]")
    raise DatasetError(f"data must be (images, labels) tensors, a Dataset or a DataLoader, got {type(data).__name__}")
