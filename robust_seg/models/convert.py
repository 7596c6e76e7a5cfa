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

from robust_seg.errors import CheckpointError

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


def _summarise(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _renamed(state: Mapping[str, torch.Tensor], renames, what: str, skip: tuple[str, ...] = ()) -> StateDict:
    """Every key of ``state`` renamed by the first matching ``(pattern, replacement)`` of ``renames``; keys starting
    with ``skip`` dropped; any other key is an error naming it (``what``: the checkpoint, in words)."""
    converted: StateDict = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(skip):
            continue
        for pattern, replacement in renames:
            if pattern.search(key):
                converted[pattern.sub(replacement, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{what} has keys the converter does not know: {_summarise(unknown)}")
    return converted


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


VIT_BLOCK = ((r"norm1\.", "ln1."), (r"norm2\.", "ln2."), (r"attn\.qkv\.(weight|bias)$", r"attn.attn.in_proj_\2"),
             (r"attn\.proj\.", "attn.attn.out_proj."), (r"mlp\.fc1\.", "ffn.layers.0.0."),
             (r"mlp\.fc2\.", "ffn.layers.1."))
"""A timm-style ViT block (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1/fc2``; also the blocks of
Strudel et al.'s Segmenter) -> mmseg's ``TransformerEncoderLayer``, within a block's keys (group 1 of the whole
pattern is the block index, so the qkv suffix is group 2)."""


def vit_block_renames(source: str, target: str) -> list[tuple[re.Pattern, str]]:
    """The ``VIT_BLOCK`` renames of ``<source>.{i}.*`` -> ``<target>.{i}.*`` (``source``, ``target``: key prefixes)."""
    return [(re.compile(rf"^{re.escape(source)}\.(\d+)\.{pattern}"), rf"{target}.\1.{replacement}")
            for pattern, replacement in VIT_BLOCK]


_TIMM_VIT_RENAMES = (
    (re.compile(r"^patch_embed\.proj\."), "patch_embed.projection."),
    *vit_block_renames("blocks", "layers"),
    (re.compile(r"^norm\."), "ln1."),
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
            key = pattern.sub(replacement, key)
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


# ----------------------------------------------------------------------------------------------- whole models
# Whole-model converters: the raw state dict of a segmentation checkpoint in another code base's layout -> this
# project's MMSeg segmentor keys (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``, without the
# ``segmentor.`` prefix). ``robust_seg.models.checkpoints.segmentation_state`` picks them by
# ``model.checkpoint_format`` and ``load_matching`` then loads the result strictly.

SEMSEG_HEADS = {"semseg_pspnet": "ppm", "semseg_deeplabv3": "aspp"}
"""The semseg formats and the key prefix of their context module (PSP module ``ppm.*`` / ASPP ``aspp.*``)."""
SEMSEG_UNUSED = ("cls2.", "mask1.")
"""DDC-AT's adversarial branch and its clean/adversarial detector: trained, but unused by the authors' inference
(their ``model.eval()`` forward returns the normal branch ``cls1``), hence dropped."""


def _semseg_head_names(state: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """(classifier, auxiliary) prefixes: ``cls``/``aux`` (PSPNet, DeepLabV3, AT/SAT) or ``cls1``/``aux_cls1`` (DDC-AT)."""
    if any(k.startswith("cls1.") for k in state):
        return "cls1", "aux_cls1"
    return "cls", "aux"


def semseg(state: Mapping[str, torch.Tensor], checkpoint_format: str) -> StateDict:
    """A PSPNet / DeepLabV3 checkpoint of the hszhao/semseg code base, as Xu et al. 2021 publish DDC-AT
    (github.com/dvlab-research/Robust-Semantic-Segmentation, ``model/pspnet.py`` and ``model/resnet.py``), -> the
    MMSeg segmentor of ``configs/model/pspnet_r50_ddcat.yaml`` / ``deeplabv3_r50_ddcat.yaml``:

    =======================================  ==============================================================
    semseg                                   MMSeg
    =======================================  ==============================================================
    layer0.{0,1,3,4,6,7}.* (deep stem:       backbone.stem.{0,1,3,4,6,7}.* (``ResNet``, ``deep_stem``,
      conv1 bn1 conv2 bn2 conv3 bn3)           ``stem_channels`` 128)
    layer{1-4}.{j}.{conv,bn}{1,2,3}.*,       backbone.layer{1-4}.{j}.* (same names)
      downsample.{0,1}.*
    ppm.features.{i}.{1,2}.* (conv, BN)      decode_head.psp_modules.{i}.1.{conv,bn}.*           (PSPNet)
    aspp.convs.{0-3}.{0,1}.* (1x1, rates     decode_head.aspp_modules.{0-3}.{conv,bn}.*          (DeepLabV3)
      6, 12, 18)
    aspp.convs.4.{1,2}.* (image pooling)     decode_head.image_pool.1.{conv,bn}.*                (DeepLabV3)
    cls.0 / cls1.0 (conv), .1 (BN)           decode_head.bottleneck.{conv,bn}.* (DeepLabV3: the 1x1 conv
                                               becomes the centre of the 3x3 one, input channels reordered
                                               from [1x1, 6, 12, 18, pool] to MMSeg's [pool, 1x1, 6, 12, 18])
    cls.4 / cls1.4 (classifier)              decode_head.conv_seg.*
    aux.{0,1,4} / aux_cls1.{0,1,4}           auxiliary_head.convs.0.{conv,bn}.*, auxiliary_head.conv_seg.*
    cls2.*, mask1.* (DDC-AT only)            dropped (unused at inference, see ``SEMSEG_UNUSED``)
    =======================================  ==============================================================

    Wrappers (``module.``) and the ``state_dict`` entry are removed by ``read_state_dict``. BatchNorm
    ``num_batches_tracked`` counters that the authors' (PyTorch 0.4 / SyncBN) files lack are set to 0 (they do
    not enter the evaluation forward). Every other key must be consumed: anything else is an error naming it.
    """
    if checkpoint_format not in SEMSEG_HEADS:
        raise CheckpointError(f"unknown semseg format '{checkpoint_format}' (choose from {', '.join(SEMSEG_HEADS)})")
    context = SEMSEG_HEADS[checkpoint_format]
    present = sorted({k.split(".")[0] for k in state})
    if not any(k.startswith("layer0.") for k in state):
        raise CheckpointError(
            f"not a semseg (hszhao / DDC-AT) checkpoint: no layer0.* deep-stem keys (its top-level keys: "
            f"{', '.join(present[:8])}); use model.checkpoint_format=auto for this project's or MMSeg checkpoints")
    other = next((f for f, c in SEMSEG_HEADS.items() if c != context and any(k.startswith(c + ".") for k in state)),
                 None)
    if other is not None or not any(k.startswith(context + ".") for k in state):
        hint = f"set model.checkpoint_format={other} and the matching model config" if other else \
            "expected a PSPNet (ppm.*) or DeepLabV3 (aspp.*) checkpoint"
        raise CheckpointError(f"semseg checkpoint without {context}.* keys for checkpoint_format={checkpoint_format} "
                            f"(its top-level keys: {', '.join(present[:8])}): {hint}")
    classifier, auxiliary = _semseg_head_names(state)

    renames: list[tuple[str, str]] = []
    for source, target in ((0, 0), (1, 1), (3, 3), (4, 4), (6, 6), (7, 7)):
        renames.append((f"layer0.{source}.", f"backbone.stem.{target}."))
    renames += [(f"layer{i}.", f"backbone.layer{i}.") for i in range(1, 5)]
    if context == "ppm":
        for i in range(4):
            renames += [(f"ppm.features.{i}.1.", f"decode_head.psp_modules.{i}.1.conv."),
                        (f"ppm.features.{i}.2.", f"decode_head.psp_modules.{i}.1.bn.")]
    else:
        for i in range(4):
            renames += [(f"aspp.convs.{i}.0.", f"decode_head.aspp_modules.{i}.conv."),
                        (f"aspp.convs.{i}.1.", f"decode_head.aspp_modules.{i}.bn.")]
        renames += [("aspp.convs.4.1.", "decode_head.image_pool.1.conv."),
                    ("aspp.convs.4.2.", "decode_head.image_pool.1.bn.")]
    renames += [(f"{classifier}.0.", "decode_head.bottleneck.conv."), (f"{classifier}.1.", "decode_head.bottleneck.bn."),
                (f"{classifier}.4.", "decode_head.conv_seg."),
                (f"{auxiliary}.0.", "auxiliary_head.convs.0.conv."), (f"{auxiliary}.1.", "auxiliary_head.convs.0.bn."),
                (f"{auxiliary}.4.", "auxiliary_head.conv_seg.")]

    converted: StateDict = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(SEMSEG_UNUSED):
            continue
        match = next(((s, t) for s, t in renames if key.startswith(s)), None)
        if match is None:
            unknown.append(key)
            continue
        converted[match[1] + key[len(match[0]):]] = value
    if unknown:
        raise CheckpointError(f"semseg checkpoint ({checkpoint_format}) has keys the converter does not know: "
                            f"{_summarise(unknown)}")

    if context == "aspp":
        key = "decode_head.bottleneck.conv.weight"
        weight = converted.get(key)
        if weight is not None:
            if weight.dim() != 4 or weight.shape[-2:] != (1, 1) or weight.shape[1] % 5:
                raise CheckpointError(f"{classifier}.0.weight {tuple(weight.shape)} is not the 1x1 projection of the "
                                    "5 ASPP branches of a semseg DeepLabV3")
            branch = weight.shape[1] // 5
            reordered = torch.cat([weight[:, 4 * branch:], weight[:, :4 * branch]], dim=1)
            centred = reordered.new_zeros(*reordered.shape[:2], 3, 3)
            centred[:, :, 1, 1] = reordered[:, :, 0, 0]
            converted[key] = centred
    for key in [k for k in converted if k.endswith(".running_mean")]:
        counter = key[:-len("running_mean")] + "num_batches_tracked"
        converted.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return converted


_SEA_UPERNET_RENAMES = (
    (re.compile(r"^backbone\.downsample_layers\.0\.stem\.(\d+)\."), r"backbone.stem.stem.\1."),
    (re.compile(r"^backbone\.downsample_layers\.([123])\.(\d)\."), r"backbone.stages.\1.downsample.\2."),
    (re.compile(r"^backbone\.stages\.(\d+)\.(\d+)\.dwconv\."), r"backbone.stages.\1.blocks.\2.conv_dw."),
    (re.compile(r"^backbone\.stages\.(\d+)\.(\d+)\.pwconv([12])\."), r"backbone.stages.\1.blocks.\2.mlp.fc\3."),
    (re.compile(r"^backbone\.stages\.(\d+)\.(\d+)\.(norm\.|gamma$)"), r"backbone.stages.\1.blocks.\2.\3"),
    (re.compile(r"^backbone\.(norm\d)\."), r"backbone.\1."),
    (re.compile(r"^(decode_head|auxiliary_head)\.classifier\."), r"\1.conv_seg."),
    (re.compile(r"^(decode_head|auxiliary_head)\.(.*)\.batch_norm\."), r"\1.\2.bn."),
    (re.compile(r"^(decode_head|auxiliary_head)\.(.*)\.conv\."), r"\1.\2.conv."),
)


def sea_upernet(state: Mapping[str, torch.Tensor], checkpoint_format: str = "sea_upernet") -> StateDict:
    """A UPerNet + ConvNeXt(-ConvStem) released with the SEA/PIR-AT paper (github.com/nmndeep/Robust-Segmentation,
    ``semseg/models/uperforseg.py`` and ``backbones/convnext_orig.py``; the file is the model's plain state dict)
    -> the MMSeg segmentor of ``configs/model/upernet_convnext_{t,s}.yaml``:

    ===============================================  ===============================================
    official                                         MMSeg (``ConvNeXtConvStem``, ``UPerHead``, ``FCNHead``)
    ===============================================  ===============================================
    backbone.downsample_layers.0.stem.{0,1,3,4}.*    backbone.stem.stem.{0,1,3,4}.*
    backbone.downsample_layers.{1,2,3}.{0,1}.*       backbone.stages.{1,2,3}.downsample.{0,1}.*
    backbone.stages.{i}.{j}.dwconv / norm / gamma    backbone.stages.{i}.blocks.{j}.conv_dw / norm / gamma
    backbone.stages.{i}.{j}.pwconv{1,2}.*            backbone.stages.{i}.blocks.{j}.mlp.fc{1,2}.*
    backbone.norm{0-3}.*                             backbone.norm{0-3}.*
    decode_head.{psp_modules.{i}.1, bottleneck,      the same module names, ``batch_norm`` -> ``bn``
      lateral_convs.{i}, fpn_convs.{i},
      fpn_bottleneck}.{conv, batch_norm}.*
    decode_head.classifier.*                         decode_head.conv_seg.*
    auxiliary_head.convs.0.{conv, batch_norm}.*      auxiliary_head.convs.0.{conv, bn}.*
    auxiliary_head.classifier.*                      auxiliary_head.conv_seg.*
    ===============================================  ===============================================

    Both code bases compute the same function: channels-first LayerNorms over the channels, layer scale ``gamma``,
    per-stage output norms, pooling scales 1, 2, 3, 6 and bilinear resizing without corner alignment. Every key
    must be consumed; anything else is an error naming it.
    """
    if not any(k.startswith("backbone.downsample_layers.") for k in state):
        present = sorted({".".join(k.split(".")[:2]) for k in state})
        raise CheckpointError(f"not a SEA-paper UPerNet checkpoint: no backbone.downsample_layers.* keys (its keys "
                            f"start with: {', '.join(present[:8])})")
    return _renamed(state, _SEA_UPERNET_RENAMES, "SEA-paper UPerNet checkpoint")


_SEA_SEGMENTER_RENAMES = (
    *vit_block_renames("encoder.blocks", "backbone.layers"),
    *vit_block_renames("decoder.blocks", "decode_head.layers"),
    (re.compile(r"^encoder\.patch_embed\.proj\."), "backbone.patch_embed.projection."),
    (re.compile(r"^encoder\.(cls_token|pos_embed)$"), r"backbone.\1"),
    (re.compile(r"^encoder\.norm\."), "backbone.ln1."),
    (re.compile(r"^decoder\.proj_dec\."), "decode_head.dec_proj."),
    (re.compile(r"^decoder\.(cls_emb|decoder_norm\.\w+|mask_norm\.\w+)$"), r"decode_head.\1"),
)
_SEA_SEGMENTER_PROJECTIONS = {"decoder.proj_patch": "decode_head.patch_proj.weight",
                              "decoder.proj_classes": "decode_head.classes_proj.weight"}
_SEA_SEGMENTER_UNUSED = ("encoder.head.",)
"""The ViT's ImageNet classification head: part of the released encoder, unused by the segmentation forward."""


def sea_segmenter(state: Mapping[str, torch.Tensor], checkpoint_format: str = "sea_segmenter") -> StateDict:
    """A Segmenter + ViT released with the SEA/PIR-AT paper (github.com/nmndeep/Robust-Segmentation,
    ``semseg/models/segmenter.py``, ``backbones/vit_encoder.py``, ``heads/segmenter_decoder.py``, after Strudel et
    al.'s code) -> MMSeg's ``VisionTransformer`` + ``SegmenterMaskTransformerHead``
    (``configs/model/segmenter_vit_s.yaml``):

    ===============================================  ===============================================
    official                                         MMSeg
    ===============================================  ===============================================
    encoder.patch_embed.proj.*                       backbone.patch_embed.projection.*
    encoder.cls_token, encoder.pos_embed             backbone.cls_token, backbone.pos_embed
    {encoder,decoder}.blocks.{i}.norm{1,2}.*         {backbone,decode_head}.layers.{i}.ln{1,2}.*
    {...}.blocks.{i}.attn.qkv.{weight,bias}          {...}.layers.{i}.attn.attn.in_proj_{weight,bias}
    {...}.blocks.{i}.attn.proj.*                     {...}.layers.{i}.attn.attn.out_proj.*
    {...}.blocks.{i}.mlp.fc{1,2}.*                   {...}.layers.{i}.ffn.layers.{0.0,1}.*
    encoder.norm.*                                   backbone.ln1.* (the final norm)
    decoder.proj_dec.*, decoder.cls_emb              decode_head.dec_proj.*, decode_head.cls_emb
    decoder.decoder_norm.*, decoder.mask_norm.*      decode_head.decoder_norm.*, decode_head.mask_norm.*
    decoder.proj_patch, decoder.proj_classes (P,     decode_head.patch_proj.weight, decode_head.classes_proj.weight
      used as x @ P)                                   (bias-free Linear: x @ W^T, so W = P^T)
    encoder.head.* (classification head)             dropped
    ===============================================  ===============================================

    The qkv projection's rows are q, k, v in that order, as ``nn.MultiheadAttention``'s ``in_proj_weight``. Every
    other key is an error naming it.
    """
    if not any(k.startswith("encoder.blocks.") for k in state) or not any(k.startswith("decoder.") for k in state):
        present = sorted({".".join(k.split(".")[:2]) for k in state})
        raise CheckpointError(f"not a SEA-paper Segmenter checkpoint: no encoder.blocks.* / decoder.* keys (its keys "
                            f"start with: {', '.join(present[:8])})")
    projections = {target: state[source].t().contiguous() for source, target in _SEA_SEGMENTER_PROJECTIONS.items()
                   if source in state}
    rest = {key: value for key, value in state.items() if key not in _SEA_SEGMENTER_PROJECTIONS}
    return {**_renamed(rest, _SEA_SEGMENTER_RENAMES, "SEA-paper Segmenter checkpoint", skip=_SEA_SEGMENTER_UNUSED),
            **projections}


SEGMENTATION_CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor], str], StateDict]] = {
    **{name: semseg for name in SEMSEG_HEADS}, "sea_upernet": sea_upernet, "sea_segmenter": sea_segmenter}
"""Whole-model checkpoint formats (``model.checkpoint_format``) beyond ``project`` and ``mmseg``."""
