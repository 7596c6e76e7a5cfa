"""Build a ``SegmentationModel`` from a ``ModelConfig`` through MMSeg's MODELS registry."""
from __future__ import annotations

import copy
import logging
import warnings
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from robust_seg.models.checkpoints import (SEMSEG_FORMATS, CheckpointError, load_matching, load_state_file,
                                          resolve_checkpoint_format, segmentation_state)
from robust_seg.models.download import WeightsFile
from robust_seg.models.wrapper import SegmentationModel

log = logging.getLogger(__name__)
_REGISTERED = False


def register_modules() -> None:
    """Import mmseg (with the mmcv.ops fallback) and register the project's backbones, once."""
    global _REGISTERED
    if _REGISTERED:
        return
    from robust_seg.compat import ensure_mmcv_ops

    ensure_mmcv_ops()
    warnings.filterwarnings("ignore", message=".*build_loss.*")
    warnings.filterwarnings("ignore", message=".*avg_non_ignore.*")
    from robust_seg.compat.lean_import import lean_mmseg_import

    with lean_mmseg_import():  # 2.4 s less start-up: modules for features never used here stay unimported
        from mmseg.utils import register_all_modules

        register_all_modules(init_default_scope=False)
    import robust_seg.models.convnext  # noqa: F401  (registers ConvNeXtConvStem into mmseg MODELS)

    _REGISTERED = True


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else copy.deepcopy(value)


def _set_num_classes(head: Any, num_classes: int) -> None:
    for entry in head if isinstance(head, list) else [head]:
        if isinstance(entry, dict):
            entry["num_classes"] = num_classes


def build_segmentor(mmseg_cfg: Mapping, num_classes: int) -> torch.nn.Module:
    """The raw MMSeg EncoderDecoder, randomly initialised with MMSeg's ``init_weights``."""
    register_modules()
    from mmseg.registry import MODELS

    cfg = _plain(mmseg_cfg)
    cfg.setdefault("type", "EncoderDecoder")
    cfg["data_preprocessor"] = None  # normalisation lives in SegmentationModel
    _set_num_classes(cfg.get("decode_head"), num_classes)
    if cfg.get("auxiliary_head"):
        _set_num_classes(cfg["auxiliary_head"], num_classes)
    segmentor = MODELS.build(cfg)
    from mmengine.logging import MMLogger

    mmengine_log = MMLogger.get_current_instance()
    level = mmengine_log.level
    mmengine_log.setLevel(logging.WARNING)  # init_weights logs every parameter at INFO level
    try:
        segmentor.init_weights()
    finally:
        mmengine_log.setLevel(level)
    return segmentor


def load_backbone(model: SegmentationModel, location: str, checkpoint_format: str) -> WeightsFile:
    """Initialise the backbone from a classifier checkpoint in ``checkpoint_format`` (converted to MMSeg keys)."""
    from robust_seg.models.convert import CONVERTERS

    if checkpoint_format not in CONVERTERS:
        raise CheckpointError(f"unknown backbone_format '{checkpoint_format}' (choose from {', '.join(CONVERTERS)})")
    backbone = model.backbone()
    state, weights = load_state_file(location)
    load_matching(backbone, CONVERTERS[checkpoint_format](state, backbone),
                  f"backbone checkpoint {location} ({checkpoint_format} format)")
    return weights


def _is_asset(path) -> bool:
    from robust_seg.names import ASSETS

    return ASSETS in path.resolve().parents


def build_model(cfg, num_classes: int) -> SegmentationModel:
    """Build the model of ``cfg`` (a ``ModelConfig`` or DictConfig) for ``num_classes`` classes.

    Order: random init -> backbone checkpoint (``backbone_init``) -> whole-model ``checkpoint``.
    ``model.weights`` records what was loaded (the run's provenance): ``source`` (``random``, ``backbone``,
    ``checkpoint`` or ``embedded`` for the weights shipped in ``robust_seg/assets``), the checkpoint's location
    and the sha256 of its bytes, and the backbone checkpoint's.
    """
    if getattr(cfg, "target", None):
        from robust_seg.models.external import build_custom_model

        return build_custom_model(cfg, num_classes)
    mmseg_cfg, mean, std = cfg.mmseg, list(cfg.mean), list(cfg.std)
    if getattr(cfg, "config", None):
        from robust_seg.models.external import mmseg_config_model

        mmseg_cfg, file_mean, file_std = mmseg_config_model(cfg)
        mean, std = file_mean or mean, file_std or std
    segmentor = build_segmentor(mmseg_cfg, num_classes)
    window = (cfg.inference.crop_size, cfg.inference.stride) if cfg.inference.mode == "slide" else None
    model = SegmentationModel(segmentor, num_classes, mean=mean, std=std, sliding_window=window,
                              pad_to_multiple=getattr(cfg.inference, "pad_to_multiple", None))
    weights = {"source": "random", "checkpoint": None, "sha256": None, "backbone": None}
    if cfg.backbone_init != "none":
        sources = dict(cfg.backbone_checkpoints or {})
        if cfg.backbone_init not in sources:
            raise CheckpointError(f"model.backbone_init={cfg.backbone_init} but model.backbone_checkpoints has "
                                  f"no such entry (has: {', '.join(sources) or 'none'})")
        if not sources[cfg.backbone_init]:
            raise CheckpointError(f"model.backbone_checkpoints.{cfg.backbone_init} is not set: give a path or URL")
        backbone = load_backbone(model, sources[cfg.backbone_init], cfg.backbone_format)
        log.info("backbone initialised from %s (%s)", sources[cfg.backbone_init], cfg.backbone_init)
        weights.update(source="backbone", backbone={"init": cfg.backbone_init, "location": backbone.location,
                                                     "sha256": backbone.sha256})
    if cfg.checkpoint:
        loaded = load_segmentation_checkpoint(model, cfg.checkpoint, getattr(cfg, "checkpoint_format", "auto"),
                                              getattr(cfg, "checkpoint_sha256", None))
        weights.update(source="embedded" if _is_asset(loaded.path) else "checkpoint", checkpoint=loaded.location,
                       sha256=loaded.sha256)
    model.weights = weights
    if cfg.sync_bn and torch.distributed.is_available() and torch.distributed.is_initialized():
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def load_segmentation_checkpoint(model: SegmentationModel, location: str, checkpoint_format: str = "auto",
                                 sha256: str | None = None) -> WeightsFile:
    """Load whole-model weights strictly: saved by this project (``SegmentationModel.state_dict()``), a whole
    MMSeg segmentor from the MMSeg model zoo, or a semseg (hszhao / DDC-AT) PSPNet or DeepLabV3, converted
    (``checkpoint_format``, see ``checkpoints.segmentation_state``)."""
    what = f"checkpoint {location}"
    state, weights = load_state_file(location, sha256)
    resolved = resolve_checkpoint_format(state, checkpoint_format, what)
    try:
        load_matching(model, segmentation_state(state, resolved, what), f"{what} ({resolved} format)")
    except CheckpointError as error:
        if resolved in SEMSEG_FORMATS:  # the usual cause: a model config other than the semseg architecture
            config = {"semseg_pspnet": "pspnet_r50_ddcat", "semseg_deeplabv3": "deeplabv3_r50_ddcat"}[resolved]
            raise CheckpointError(f"{error}; {resolved} checkpoints need model={config} (deep stem, "
                                  "no contracted dilation)") from None
        raise
    return weights
