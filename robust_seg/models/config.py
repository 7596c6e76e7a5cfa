"""Structured-config schema of the ``model`` group (configs/model/*.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

INFERENCE_MODES = ("whole", "slide")
"""``model.inference.mode``: the whole image at once, or a sliding window (``crop_size``, ``stride``)."""


@dataclass
class InferenceConfig:
    """``whole`` image inference, or ``slide`` with square windows of ``crop_size`` every ``stride`` pixels.

    pad_to_multiple: pad the input to a multiple of this (the Segmenter's patch size), resize the logits to the
    padded size, crop (``robust_seg.models.wrapper.SegmentationModel``); None: resize the logits to the input.
    """

    mode: str = "whole"
    crop_size: int = 512
    stride: int = 341
    pad_to_multiple: Optional[int] = None


@dataclass
class ZooEntry:
    """A published model of the zoo (``configs/model/zoo/<name>.yaml``): what it is and where its numbers are.

    dataset: the dataset config it was trained for (``model=zoo/<name>`` with another dataset is refused).
    threat_model: ``Linf`` (adversarially trained) or ``none`` (clean training).
    training: how it was trained, in words. source: where its weights are published.
    paper: its published numbers, ``<table>/<row>`` (``robust_seg.reporting.published.paper_numbers``; None: none).
    readme: the numbers the official code's README lists for the same file, where they differ from the paper:
        mIoU (%) per radius (``"0"``, ``"4/255"``, ...), shown beside the paper's under their own source.
    protocol: the evaluation protocol of its paper's code (``robust_seg.data.protocols``): the default of
        ``dataset.protocol`` when this entry is evaluated.
    """

    dataset: str = "???"
    threat_model: str = "Linf"
    training: str = ""
    source: str = ""
    paper: Optional[str] = None
    readme: Optional[dict[str, float]] = None
    protocol: Optional[str] = None


@dataclass
class ModelConfig:
    """A segmentation model built through MMSeg's registry and wrapped by ``SegmentationModel``.

    mmseg: the MMSeg ``EncoderDecoder`` config (num_classes is filled in from the dataset).
    backbone_init: which entry of ``backbone_checkpoints`` initialises the backbone
        (``none`` = random; ``clean``/``robust`` = ImageNet classifiers, PIR-AT uses ``robust``).
    backbone_format: key layout of those checkpoints (see ``robust_seg.models.convert.CONVERTERS``).
    checkpoint: weights of the whole segmentation model (local path or URL), loaded last.
    checkpoint_format: key layout of ``checkpoint`` (``robust_seg.models.checkpoints.CHECKPOINT_FORMATS``):
        ``project`` = this project's ``SegmentationModel.state_dict()`` (keys ``segmentor.*``), ``mmseg`` =
        a whole MMSeg segmentor as in the MMSeg model zoo (keys ``backbone.*``, ``decode_head.*``,
        ``auxiliary_head.*``), ``auto`` = whichever of the two the keys show.
    checkpoint_sha256: the sha256 of the checkpoint file; when given, the file is checked against it after a
        download and on every load (``robust_seg.models.download``).
    random_weights: evaluation refuses a model without ``checkpoint`` unless this is true (evaluating random
        weights on purpose, e.g. to test a pipeline); such a run says so in every report.
    target: ``model=custom``: a callable returning an ``nn.Module`` (robust_seg/models/external.py).
    config: ``model=mmseg_config``: an MMSegmentation config file whose ``model`` is built.
    zoo: set by the entries of ``configs/model/zoo/`` (published models, ``python -m robust_seg.zoo``).
    input_transforms: a defense in front of the network at evaluation, e.g. ``[{name: quantize, bits: 4}]``
        (``robust_seg.models.defenses``: quantize, jpeg, random_resize_pad, gaussian_noise, or a target).
    """

    name: str = "???"
    mmseg: Any = field(default_factory=dict)
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    backbone_init: str = "none"
    backbone_checkpoints: dict[str, Optional[str]] = field(default_factory=dict)
    backbone_format: str = "mmseg"
    checkpoint: Optional[str] = None
    checkpoint_format: str = "auto"
    checkpoint_sha256: Optional[str] = None
    random_weights: bool = False
    target: Optional[str] = None
    config: Optional[str] = None
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    sync_bn: bool = False
    zoo: Optional[ZooEntry] = None
    input_transforms: list[Any] = field(default_factory=list)


def check_model_config(cfg, *, evaluation: bool) -> None:
    """The ``model`` section's values (``ConfigError`` naming the key): a custom model's factory or MMSeg config file,
    the checkpoint format, the inference mode and its window, the sha256; for an evaluation, trained weights (or
    ``random_weights`` on purpose)."""
    from robust_seg.config_checks import choice, positive_int
    from robust_seg.errors import ConfigError
    from robust_seg.models.checkpoints import check_checkpoint_format

    for key, group in (("target", "custom"), ("config", "mmseg_config")):
        if cfg.name == group and not getattr(cfg, key, None):
            example = "my_package.my_factory" if key == "target" else "path/to/config.py"
            raise ConfigError(f"model={group} needs model.{key}=... (e.g. model.{key}={example})")
    check_checkpoint_format(cfg.checkpoint_format, "model.checkpoint_format")
    from robust_seg.models.defenses import build_transform

    for spec in cfg.get("input_transforms") or []:
        build_transform(spec)  # a ConfigError naming the transform and the value
    choice("model.inference.mode", cfg.inference.mode, INFERENCE_MODES)
    if cfg.inference.mode == "slide":
        positive_int("model.inference.crop_size", cfg.inference.crop_size)
        positive_int("model.inference.stride", cfg.inference.stride)
    positive_int("model.inference.pad_to_multiple", cfg.inference.pad_to_multiple, optional=True)
    if cfg.checkpoint_sha256 is not None and (len(str(cfg.checkpoint_sha256)) != 64 or
                                              any(c not in "0123456789abcdefABCDEF" for c in str(cfg.checkpoint_sha256))):
        raise ConfigError(f"model.checkpoint_sha256={cfg.checkpoint_sha256!r}: must be 64 hexadecimal digits")
    if evaluation and not cfg.checkpoint and not cfg.random_weights and not cfg.target:  # a factory brings its own
        raise ConfigError(f"model {cfg.name} has no trained weights: give model.checkpoint=<path or URL> "
                          "(model=embedded is the shipped model), or model.random_weights=true to evaluate "
                          "random weights on purpose")


def check_zoo_dataset(model, dataset) -> None:
    """A zoo model is evaluated on the dataset it was trained for (its classes are that dataset's)."""
    from robust_seg.errors import ConfigError

    zoo = model.get("zoo")
    if zoo is not None and zoo.dataset != dataset.name:
        raise ConfigError(f"model=zoo/{model.name} was trained on {zoo.dataset}, not {dataset.name}: "
                          f"add dataset={zoo.dataset}")
