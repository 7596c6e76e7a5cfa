"""Target maps of targeted attacks, configured by ``attack.target`` (thesis Sec. 5.5.4; SEA paper App. D).

A targeted attack asks every attacked pixel i to be classified as t_i (thesis Sec. 5.5.3: argmax_k f(x+delta)_{k,i}
= t_i; APSR = agreement with t over the pixels labelled in both the ground truth and t). ACC and mIoU are
always computed against the ground truth. Two kinds of target, built per batch, deterministically:

``{kind: class, class_index: c}``
    every pixel to class c. Thesis Sec. 5.5.4 for Pascal VOC: c = 0 (*background*, "a segmentation with no
    object of interest"); SEA paper App. D uses one-class maps as well.
``{kind: map, path: <label PNG>}``
    one fixed label map for every image (grey PNG of class indices, 255 = no target), resized to the batch's
    image size with nearest-neighbour sampling when its size differs. Thesis Sec. 5.5.4 / Fig. A IV-1 for
    Cityscapes: the per-pixel majority label over the training set, smoothed. The thesis' smoothed map was
    drawn by hand and is not published; :func:`majority_label_map` + :func:`smooth_label_map` compute the
    closest reproducible substitute (choice: a mode filter over a square window; see
    :func:`write_majority_target`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robust_seg import IGNORE_INDEX
from robust_seg.errors import ConfigError

TARGET_KINDS = ("class", "map")


@dataclass(frozen=True)
class TargetMap:
    """A parsed ``attack.target``: a constant class or a fixed label map (kept on the CPU, moved per batch)."""

    kind: str
    class_index: Optional[int] = None
    path: Optional[str] = None
    label_map: Optional[torch.Tensor] = None

    @property
    def description(self) -> str:
        return f"class:{self.class_index}" if self.kind == "class" else f"map:{self.path}"

    def labels_for(self, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
        """Target labels (B, H, W) int64 on ``labels``' device for a batch with ground truth ``labels`` (B, H, W)."""
        if self.kind == "class":
            if num_classes is not None and not 0 <= self.class_index < num_classes:
                raise ConfigError(f"attack.target.class_index={self.class_index} is not a class of this "
                                  f"{num_classes}-class model")
            return torch.full_like(labels, self.class_index, dtype=torch.long)
        target = self.label_map
        if tuple(target.shape) != tuple(labels.shape[-2:]):
            target = F.interpolate(target[None, None].float(), size=labels.shape[-2:], mode="nearest")[0, 0].long()
        if num_classes is not None:
            invalid = (target >= num_classes) & (target != IGNORE_INDEX)
            if bool(invalid.any()):
                raise ConfigError(f"attack.target.path={self.path} holds classes {sorted(set(target[invalid].tolist()))[:5]}"
                                  f" outside 0..{num_classes - 1} (and {IGNORE_INDEX} = no target)")
        return target.to(labels.device).expand_as(labels).clone()


def parse_target(cfg: Optional[Mapping[str, Any]]) -> Optional[TargetMap]:
    """``attack.target`` (None = untargeted) -> ``TargetMap``; one clear line on a malformed entry."""
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"attack.target must be null or a mapping such as {{kind: class, class_index: 0}}, got {cfg!r}")
    cfg = dict(cfg)
    kind = cfg.pop("kind", None)
    if kind not in TARGET_KINDS:
        raise ConfigError(f"attack.target.kind={kind!r}: choose from {', '.join(TARGET_KINDS)} "
                          "(e.g. attack.target={kind:class,class_index:0})")
    needed = {"class": "class_index", "map": "path"}[kind]
    extra = sorted(set(cfg) - {needed})
    if extra or cfg.get(needed) is None:
        raise ConfigError(f"attack.target of kind {kind} takes exactly '{needed}'"
                          + (f" (unknown: {', '.join(extra)})" if extra else ""))
    if kind == "class":
        if isinstance(cfg["class_index"], bool) or not isinstance(cfg["class_index"], int) or cfg["class_index"] < 0:
            raise ConfigError(f"attack.target.class_index must be a class index >= 0, got {cfg['class_index']!r}")
        return TargetMap("class", class_index=cfg["class_index"])
    return TargetMap("map", path=str(cfg["path"]), label_map=read_label_map(cfg["path"]))


def read_label_map(path: str | Path) -> torch.Tensor:
    """Grey (L) or palette (P) PNG of class indices -> int64 (H, W); 255 = no target."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"attack.target.path: no target map at {path} (a grey PNG of class indices, 255 = none)")
    with Image.open(path) as file:
        if file.mode not in ("L", "P"):
            raise ConfigError(f"attack.target.path: {path} has PIL mode {file.mode!r}; expected a grey (L) or "
                              "palette (P) PNG of class indices")
        return torch.from_numpy(np.asarray(file, dtype=np.uint8).astype(np.int64))


def write_label_map(label_map: torch.Tensor, path: str | Path) -> None:
    """Save a (H, W) map of class indices (0..254, 255 = no target) as a grey PNG readable by ``read_label_map``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label_map.to(torch.uint8).cpu().numpy(), mode="L").save(path)


def majority_label_map(labels: Iterable[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Per-pixel majority label (mode) over label maps of one size (thesis Sec. 5.5.4, Fig. A IV-1 top).

    ``labels``: (H, W) or (B, H, W) int64 tensors. Unlabelled (255) is a candidate of its own, as in the thesis'
    Fig. A IV-1 where "no label" is part of the majority map (e.g. Cityscapes' ego-vehicle area): a pixel
    unlabelled in most images gets 255 (no target). Ties go to the lowest class index, 255 last.
    """
    counts = None
    for batch in labels:
        batch = batch.reshape(-1, *batch.shape[-2:])
        if counts is None:
            counts = torch.zeros(num_classes + 1, batch[0].numel(), dtype=torch.int64)  # row K: unlabelled
        pixels = torch.arange(counts.shape[1]).expand(batch.shape[0], -1).reshape(-1)
        counts.index_put_((batch.clamp_max(num_classes).reshape(-1), pixels), torch.ones((), dtype=torch.int64),
                          accumulate=True)
    if counts is None:
        raise ValueError("majority_label_map needs at least one label map")
    majority = counts.argmax(0).reshape(batch.shape[-2:])
    return torch.where(majority == num_classes, torch.full_like(majority, IGNORE_INDEX), majority)


def _box_sums(values: torch.Tensor, window: int) -> torch.Tensor:
    """Sums of ``values`` (C, H, W) over window x window squares centred on every pixel (cut at the borders)."""
    radius = window // 2
    for dim in (1, 2):
        padded = F.pad(values.movedim(dim, -1), (radius + 1, radius))
        cumulative = padded.cumsum(-1)
        values = (cumulative[..., window:] - cumulative[..., :-window]).movedim(-1, dim)
    return values


def smooth_label_map(label_map: torch.Tensor, num_classes: int, window: int) -> torch.Tensor:
    """Mode filter: every pixel takes the most frequent label of the ``window`` x ``window`` square around it
    (255 counts as a label of its own, so large unlabelled areas stay unlabelled). ``window`` odd.

    Choice (the thesis draws its smoothed target by hand, Fig. A IV-1 bottom): removes the high spatial
    frequencies of the majority map while keeping its layout. Cost O(H W K) with cumulative sums.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be odd and positive, got {window}")
    classes = label_map.clamp_max(num_classes)  # 255 -> class K
    one_hot = F.one_hot(classes, num_classes + 1).permute(2, 0, 1).double()
    smoothed = _box_sums(one_hot, window).argmax(0)
    return torch.where(smoothed == num_classes, torch.full_like(smoothed, IGNORE_INDEX), smoothed)


def write_majority_target(dataset, path: str | Path, num_classes: int, window: int) -> torch.Tensor:
    """Majority label of every pixel over ``dataset`` (items with same-size ``label``), mode-filtered with
    ``window``, written to ``path`` for ``attack.target={kind: map, path: ...}``; returns the map."""
    target = smooth_label_map(majority_label_map((item["label"] for item in dataset), num_classes),
                              num_classes, window)
    write_label_map(target, path)
    return target
