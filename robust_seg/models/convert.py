"""Backbone checkpoint key converters: published classifier checkpoints -> MMSeg backbone state dicts.

Each converter takes the raw state dict of a checkpoint and the target backbone module (to read target
shapes and the initial values of parameters a classifier does not have) and returns a state dict whose
keys are exactly the backbone's. ``robust_seg.models.build.load_backbone`` then loads it strictly.
"""
from __future__ import annotations

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


def _fill_from_target(state: StateDict, backbone: nn.Module, prefixes: tuple[str, ...]) -> StateDict:
    """Add the target's own (initial) values for its keys under ``prefixes`` that classifiers lack."""
    own = backbone.state_dict()
    return {**{k: v for k, v in own.items() if k.startswith(prefixes) and k not in state}, **state}


def mmseg(state: Mapping[str, torch.Tensor], backbone: nn.Module) -> StateDict:
    """Identity: the checkpoint already has the backbone's MMSeg keys (a ``backbone.`` prefix is removed)."""
    return {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()}


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
    state = _drop(state, ("head.", "norm_pre.", "normalize.", "normalizer.", "fc."))
    return _fill_from_target(state, backbone, tuple(f"norm{i}." for i in range(4)))


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor], nn.Module], StateDict]] = {
    "mmseg": mmseg,
    "timm_convnext": timm_convnext,
}
