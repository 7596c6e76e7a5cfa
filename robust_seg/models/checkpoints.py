"""Loading weights safely (``weights_only=True``) from a local path or a URL."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from robust_seg.errors import CheckpointError  # noqa: F401  (re-exported: robust_seg.models.CheckpointError)
from robust_seg.models.download import WeightsFile, resolve_weights_file


def load_state_file(location: str, expected_sha256: str | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], WeightsFile]:
    """A state dict from a path or an http(s) URL (hash-checked cache, ``robust_seg.models.download``), never
    unpickling objects, and the file it came from (with its sha256, for the run's provenance).

    Accepts plain state dicts and the usual wrappers (``state_dict``, ``model``, ``module.`` prefixes).
    A NaN or infinite value in any floating tensor is refused, naming the tensor.
    """
    weights = resolve_weights_file(location, expected_sha256)
    try:
        state = torch.load(weights.path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {location} as plain tensors: {error}".splitlines()[0]) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {location} holds a {type(state).__name__}, not a state dict")
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not all_finite(value):
            raise CheckpointError(f"checkpoint {location} holds NaN or infinite values in {key}: "
                                  "the weights are broken (use an earlier checkpoint)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return state, weights


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or infinite value. A sum with a NaN or infinite term is not finite, so a finite sum settles it in one
    fast reduction, without ``isfinite``'s mask of the whole tensor; a sum that is not finite
    (a non-finite value, or only an overflow of large ones) is checked value by value."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def read_state_dict(location: str, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict of :func:`load_state_file` alone."""
    return load_state_file(location, map_location=map_location)[0]


SEGMENTOR_PREFIX = "segmentor."
SEMSEG_FORMATS = ("semseg_pspnet", "semseg_deeplabv3")
CONVERTED_FORMATS = SEMSEG_FORMATS + ("sea_upernet", "sea_segmenter")
CHECKPOINT_FORMATS = ("auto", "project", "mmseg") + CONVERTED_FORMATS
"""Layouts of whole-model checkpoints: see :func:`segmentation_state`."""


def check_checkpoint_format(checkpoint_format: str, name: str = "model.checkpoint_format") -> None:
    """A known layout (``CHECKPOINT_FORMATS``), else ``CheckpointError`` naming ``name`` and the choices."""
    if checkpoint_format not in CHECKPOINT_FORMATS:
        from robust_seg.config_checks import did_you_mean

        raise CheckpointError(f"{name}={checkpoint_format!r}: unknown checkpoint format{did_you_mean(checkpoint_format, CHECKPOINT_FORMATS)}; "
                              f"choose from {', '.join(CHECKPOINT_FORMATS)}")


def resolve_checkpoint_format(state: Mapping[str, torch.Tensor], checkpoint_format: str, what: str) -> str:
    """``checkpoint_format`` with ``auto`` replaced by the layout the keys show (see :func:`segmentation_state`)."""
    check_checkpoint_format(checkpoint_format)
    if checkpoint_format != "auto":
        return checkpoint_format
    if any(k.startswith(SEGMENTOR_PREFIX) for k in state):
        return "project"
    if any(k.startswith("layer0.") for k in state):
        if any(k.startswith("aspp.") for k in state):
            return "semseg_deeplabv3"
        if any(k.startswith("ppm.") for k in state):
            return "semseg_pspnet"
    if any(k.startswith("backbone.downsample_layers.") for k in state):
        return "sea_upernet"
    if any(k.startswith("encoder.blocks.") for k in state) and any(k.startswith("decoder.") for k in state):
        return "sea_segmenter"
    return "mmseg"


def segmentation_state(state: Mapping[str, torch.Tensor], checkpoint_format: str, what: str) -> dict[str, torch.Tensor]:
    """A whole-model state dict in the layout of ``SegmentationModel.state_dict()`` (keys ``segmentor.*``).

    ``project``: saved by this project, used as it is. ``mmseg``: a whole MMSeg segmentor (the MMSeg model
    zoo's ``EncoderDecoder`` checkpoints: ``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``; the
    ``state_dict`` / ``meta`` wrapper is removed by :func:`read_state_dict`), prefixed with ``segmentor.``.
    ``semseg_pspnet`` / ``semseg_deeplabv3``: a PSPNet / DeepLabV3 of the hszhao/semseg code base, e.g. the DDC-AT
    and AT models of Xu et al. 2021 (keys ``layer0..layer4``, ``ppm`` / ``aspp``, ``cls`` / ``cls1``, ``aux`` /
    ``aux_cls1``), converted by ``robust_seg.models.convert.semseg`` for the model configs
    ``pspnet_r50_ddcat`` / ``deeplabv3_r50_ddcat``.
    ``sea_upernet`` / ``sea_segmenter``: a UPerNet + ConvNeXt / Segmenter + ViT released with the SEA/PIR-AT paper
    (``robust_seg.models.convert.sea_upernet`` / ``sea_segmenter``).
    ``auto``: ``project`` when any key starts with ``segmentor.``, a semseg format when the keys are semseg's
    (``layer0.*`` with ``ppm.*`` or ``aspp.*``), ``sea_upernet`` for ``backbone.downsample_layers.*``,
    ``sea_segmenter`` for ``encoder.blocks.*`` with ``decoder.*``, else ``mmseg``.
    """
    checkpoint_format = resolve_checkpoint_format(state, checkpoint_format, what)
    if checkpoint_format == "project":
        return dict(state)
    if checkpoint_format in CONVERTED_FORMATS:
        from robust_seg.models.convert import SEGMENTATION_CONVERTERS

        try:
            state = SEGMENTATION_CONVERTERS[checkpoint_format](state, checkpoint_format)
        except CheckpointError as error:
            raise CheckpointError(f"{what}: {error}") from None
    return {SEGMENTOR_PREFIX + k: v for k, v in state.items()}


def _summarise(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_matching(module: nn.Module, state: Mapping[str, torch.Tensor], what: str,
                  allow_missing: tuple[str, ...] = ()) -> None:
    """Load ``state`` strictly into ``module``; on mismatch raise one readable line listing the keys.

    ``allow_missing``: prefixes of module keys that may legitimately be absent
    (e.g. a classifier head that the backbone does not have).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                   if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing keys: {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarise(unexpected)}")
        if wrong_shape:
            parts.append(f"shape mismatch: {_summarise(wrong_shape, 3)}")
        raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))
    module.load_state_dict(dict(state), strict=False)
