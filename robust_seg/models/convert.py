"""Backbone checkpoint key converters: published classifier checkpoints -> MMSeg backbone state dicts.

Each converter takes the raw state dict of a checkpoint and the target backbone module (to read target
shapes and the initial values of parameters a classifier does not have) and returns a state dict whose
keys are exactly the backbone's. ``robust_seg.models.build.load_backbone`` then loads it strictly.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]


def _strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> StateDict:
    """Remove any of ``prefixes`` (repeatedly, in any order) from the start of every key."""
    stripped = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in prefixes:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        stripped[key] = value
    return stripped


def _drop(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> StateDict:
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def _fill_from_target(state: StateDict, backbone: nn.Module, absent: Callable[[str], bool]) -> StateDict:
    """Add the backbone's own (initial) values for its keys that the checkpoint legitimately lacks
    (``absent(key)`` is True) and does not have."""
    own = backbone.state_dict()
    return {**{k: v for k, v in own.items() if absent(k) and k not in state}, **state}


def mmseg(state: Mapping[str, torch.Tensor], backbone: nn.Module) -> StateDict:
    """Identity: the checkpoint already has the backbone's MMSeg keys. From a whole MMSeg segmentor's
    checkpoint (keys ``backbone.*``, ``decode_head.*``, ...) the ``backbone.*`` entries are taken."""
    prefix = "backbone."
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def timm_convnext(state: Mapping[str, torch.Tensor], backbone: nn.Module) -> StateDict:
    """timm ConvNeXt with the ConvStem of Singh et al. 2023 -> ``ConvNeXtConvStem`` (robust_seg.models.convnext).

    ``ConvNeXtConvStem`` uses timm's parameter names, so the mapping is:
      * wrappers removed: ``module.``, ``model.``, ``base_model.`` prefixes (DDP / normalising wrappers);
        ImageNet normalisation buffers (``normalize.*``, ``normalizer.*``) dropped;
      * ``stem.stem.*``, ``stages.*`` kept as they are;
      * the classifier ``head.*`` (final norm + fc) and timm's ``norm_pre`` dropped;
      * the segmentation output norms ``norm0..norm3`` (absent in classifiers) keep the backbone's
        initial values (LayerNorm weight 1, bias 0), as in the official ConvNeXt segmentation code.
    """
    state = _strip_prefixes(state, ("module.", "model.", "base_model."))
    state = _drop(state, ("head.", "norm_pre.", "normalize.", "normalizer."))
    return _fill_from_target(state, backbone, lambda key: re.match(r"norm\d+\.", key) is not None)


_TIMM_VIT_RENAMES = (
    (r"^patch_embed\.proj\.", "patch_embed.projection."),
    (r"^blocks\.(\d+)\.norm1\.", r"layers.\1.ln1."),
    (r"^blocks\.(\d+)\.norm2\.", r"layers.\1.ln2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"layers.\1.attn.attn.in_proj_\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attn.attn.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"layers.\1.ffn.layers.0.0."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"layers.\1.ffn.layers.1."),
    (r"^norm\.", "ln1."),
)


def timm_vit(state: Mapping[str, torch.Tensor], backbone: nn.Module) -> StateDict:
    """timm ViT (e.g. ViT-S/16 at 224) -> mmseg ``VisionTransformer``, the mapping of mmseg's ``vit2mmseg``:

    ==============================  ==========================================
    timm                            mmseg VisionTransformer
    ==============================  ==========================================
    cls_token, pos_embed            cls_token, pos_embed (resized, see below)
    patch_embed.proj.*              patch_embed.projection.*
    blocks.i.norm1.* / norm2.*      layers.i.ln1.* / layers.i.ln2.*
    blocks.i.attn.qkv.{weight,bias} layers.i.attn.attn.in_proj_{weight,bias}
    blocks.i.attn.proj.*            layers.i.attn.attn.out_proj.*
    blocks.i.mlp.fc1.* / fc2.*      layers.i.ffn.layers.0.0.* / ffn.layers.1.*
    norm.* (final norm)             ln1.* (``final_norm=True``)
    head.*, fc_norm.*               dropped (classifier)
    ==============================  ==========================================

    Wrappers (``module.``, ``model.``, ``base_model.``) and normalisation buffers are removed as in
    :func:`timm_convnext`. ``pos_embed`` (1, 1 + 14*14, C) at 224 is resized, keeping the cls token, to the
    backbone's grid ``img_size // patch_size`` (e.g. 32x32 for crop 512) with the backbone's own
    ``resize_pos_embed`` and ``interpolate_mode`` (bicubic in our configs), as mmseg does at load time.
    """
    state = _strip_prefixes(state, ("module.", "model.", "base_model."))
    state = _drop(state, ("head.", "fc_norm.", "normalize.", "normalizer."))
    converted = {}
    for key, value in state.items():
        for pattern, replacement in _TIMM_VIT_RENAMES:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    if "pos_embed" in converted:
        side = int(round((converted["pos_embed"].shape[1] - 1) ** 0.5))
        grid = tuple(size // backbone.patch_size for size in backbone.img_size)
        converted["pos_embed"] = backbone.resize_pos_embed(converted["pos_embed"], grid, (side, side),
                                                           backbone.interpolate_mode)
    return converted


def torchvision_resnet(state: Mapping[str, torch.Tensor], backbone: nn.Module) -> StateDict:
    """torchvision ResNet -> mmseg ``ResNet`` (v1b: plain 7x7 stem, stride in the 3x3 conv, ``style='pytorch'``).

    The two layouts share their names (``conv1``, ``bn1``, ``layer{1-4}.{j}.conv{1,2,3}``, ``bn{1,2,3}``,
    ``downsample.{0,1}``), so only wrappers are handled:
      * robust checkpoints of Salman et al. 2020 (``robustness`` library): the classifier lies under
        ``module.model.``, a copy for the attacker under ``module.attacker.model.`` and the input
        normaliser under ``module.normalizer.``; the classifier is kept, attacker copy and normaliser dropped;
      * the classifier ``fc.*`` is dropped;
      * BatchNorm ``num_batches_tracked`` counters that older checkpoints lack keep the backbone's values.
    Dilation (``strides=(1,2,1,1), dilations=(1,1,2,4)``) changes no parameter shape.
    """
    state = _drop(_strip_prefixes(state, ("module.",)), ("attacker.", "normalizer.", "normalize."))
    state = _drop(_strip_prefixes(state, ("model.",)), ("fc.",))
    return _fill_from_target(state, backbone, lambda key: key.endswith("num_batches_tracked"))


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor], nn.Module], StateDict]] = {
    "mmseg": mmseg,
    "timm_convnext": timm_convnext,
    "timm_vit": timm_vit,
    "torchvision_resnet": torchvision_resnet,
}
