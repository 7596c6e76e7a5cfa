"""Hydra structured-config schema of the ``dataset`` config group.

One dataclass serves the three datasets; the knobs of the procedural dataset live
in the optional nested :class:`SyntheticConfig` (``None`` for the real datasets).
Being a dataclass schema, unknown keys in ``configs/dataset/*.yaml`` or on the
command line are rejected by OmegaConf/Hydra.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from robust_seg.data.errors import DatasetError

DATASET_NAMES = ("synthetic", "pascal_voc", "ade20k", "cityscapes")


@dataclass
class SyntheticConfig:
    """Size and difficulty of the procedural dataset (``robust_seg.data.synthetic``).

    Attributes:
        num_train / num_val: number of images of the ``train`` / ``val`` split.
        image_size: side of the square images.
        min_objects / max_objects: objects per image (uniform, inclusive).
        border_width: thickness in pixels of the ignore band (label 255) drawn along
            every boundary between regions, like VOC's object outlines (0: none).
        noise_std: std of the i.i.d. Gaussian pixel noise.
        colour_jitter: std of the per-object shift of the class colour.
        texture_contrast: amplitude of the class texture (stripes/checker/dots).
    """

    num_train: int = 1024
    num_val: int = 128
    image_size: int = 64
    min_objects: int = 3
    max_objects: int = 6
    border_width: int = 1
    noise_std: float = 0.1
    colour_jitter: float = 0.12
    texture_contrast: float = 0.25


@dataclass
class DatasetConfig:
    """Schema of ``cfg.dataset``.

    Attributes:
        name: ``synthetic``, ``pascal_voc``, ``ade20k`` or ``cityscapes``.
        root: dataset directory (``VOCdevkit/VOC2012`` or ``ADEChallengeData2016``);
            unused by ``synthetic``.
        num_classes: K, including the background class (VOC 21, ADE20K 151 as in the
            SEA paper App. B.2); must match the dataset's class list.
        base_size / crop_size: Table 5 "Base size" / "Crop size" (square crop).
        train_split / val_split: split names (VOC: ids file under
            ``ImageSets/Segmentation``; ADE20K: ``training`` / ``validation``;
            synthetic: ``train`` / ``val``).
        flip / gaussian_blur: Table 5 random horizontal flip / random Gaussian blur.
        scale_range: the random long side is drawn uniformly in
            ``[base_size * lo, base_size * hi]`` (the usual 0.5..2.0).
        protocol: the evaluation protocol (``robust_seg.data.protocols``): ``pad`` (this project's),
            ``sea`` (the SEA code's: short side to ``crop_size``, centre crop) or ``thesis`` (the ALMA prox
            code's: short side to ``eval_size``, whole image); ``None``: the zoo entry's protocol when the
            model is a zoo entry, else ``pad``.
        outlines: label convention of label 255: ``ignore`` or ``background`` (counts as class 0, as the
            SEA code's VOC loader); ``None``: the protocol's (``background`` for ``sea`` on PASCAL-VOC).
        eval_size: ``pad``: the long side is brought down to at most S and images are padded to S x S
            (image 0, label 255) so that they batch; ``thesis``: the short side becomes S;
            ``None`` evaluates images as stored (images of several sizes are evaluated one at a time).
        augmentation: training pipeline, ``sea`` (the official SEA code's, short-side scale, blur before
            the crop) or ``project`` (long-side scale, blur after the crop); ``robust_seg.data.transforms``.
        train_label_pad: label of the pixels padded in training (0 = background as the official code,
            255 = ignored).
        max_images: use only the first N images of a split (quick runs).
        seed: seed of the synthetic generator and of the training augmentation.
        synthetic: knobs of the synthetic dataset (required iff ``name == synthetic``).
    """

    name: str = MISSING
    num_classes: int = MISSING
    base_size: int = MISSING
    crop_size: int = MISSING
    root: Optional[str] = None
    train_split: str = "train"
    val_split: str = "val"
    flip: bool = True
    gaussian_blur: bool = True
    scale_range: List[float] = field(default_factory=lambda: [0.5, 2.0])
    protocol: Optional[str] = None
    outlines: Optional[str] = None
    eval_size: Optional[int] = None
    augmentation: str = "project"
    train_label_pad: int = 255
    max_images: Optional[int] = None
    seed: int = 0
    synthetic: Optional[SyntheticConfig] = None


def validate_dataset_config(cfg: DatasetConfig) -> DatasetConfig:
    """Return ``cfg`` unchanged, or raise ``DatasetError`` listing every inconsistent value on one line."""
    problems = []
    if cfg.name not in DATASET_NAMES:
        problems.append(f"name={cfg.name!r} is not one of {DATASET_NAMES}")
    if cfg.num_classes < 2:
        problems.append(f"num_classes={cfg.num_classes} < 2")
    if cfg.base_size < 1 or cfg.crop_size < 1:
        problems.append(f"base_size={cfg.base_size} and crop_size={cfg.crop_size} must be positive")
    if len(cfg.scale_range) != 2 or not 0 < cfg.scale_range[0] <= cfg.scale_range[1]:
        problems.append(f"scale_range={list(cfg.scale_range)} must be [lo, hi] with 0 < lo <= hi")
    from robust_seg.data.protocols import OUTLINES, PROTOCOLS

    if cfg.protocol is not None and cfg.protocol not in PROTOCOLS:
        problems.append(f"protocol={cfg.protocol!r} is not one of {', '.join(PROTOCOLS)} (or null)")
    if cfg.outlines is not None and cfg.outlines not in OUTLINES:
        problems.append(f"outlines={cfg.outlines!r} is not one of {', '.join(OUTLINES)} (or null)")
    if cfg.augmentation not in ("sea", "project"):
        problems.append(f"augmentation={cfg.augmentation!r} is not one of sea, project")
    if cfg.train_label_pad != 255 and not 0 <= cfg.train_label_pad < cfg.num_classes:
        problems.append(f"train_label_pad={cfg.train_label_pad} must be 255 (ignored) or a class 0..{cfg.num_classes - 1}")
    if cfg.eval_size is not None and cfg.eval_size < 1:
        problems.append(f"eval_size={cfg.eval_size} must be positive or null")
    if cfg.max_images is not None and cfg.max_images < 1:
        problems.append(f"max_images={cfg.max_images} must be positive or null")
    if (cfg.name == "synthetic") != (cfg.synthetic is not None):
        problems.append("the 'synthetic' section is required for name=synthetic and only for it")
    if cfg.synthetic is not None and not 1 <= cfg.synthetic.min_objects <= cfg.synthetic.max_objects:
        problems.append("synthetic needs 1 <= min_objects <= max_objects")
    if problems:
        raise DatasetError("invalid dataset config: " + "; ".join(problems))
    return cfg


def as_dataset_config(cfg: Any) -> DatasetConfig:
    """Return ``cfg`` as a validated :class:`DatasetConfig` (accepts the dataclass, a DictConfig or a dict).

    Unknown keys are rejected by the merge with the schema; values are checked by
    :func:`validate_dataset_config`.
    """
    if isinstance(cfg, DatasetConfig):
        return validate_dataset_config(cfg)
    if not isinstance(cfg, (dict, DictConfig)):
        raise DatasetError(f"expected a DatasetConfig, DictConfig or dict, got {type(cfg).__name__}")
    merged = OmegaConf.merge(OmegaConf.structured(DatasetConfig), cfg)
    return validate_dataset_config(OmegaConf.to_object(merged))
