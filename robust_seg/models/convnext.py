"""ConvNeXt with the convolutional stem of Singh et al. (2023) as an MMSeg backbone (``ConvNeXtConvStem``).

The SEA/PIR-AT paper (App. B.2, Table 6) uses UPerNet with ConvNeXt-T/S backbones whose 4x4 patchify
stem is replaced by the ConvStem of Singh et al. 2023 ("Revisiting adversarial training for ImageNet"):
two 3x3 stride-2 convolutions, each followed by a channels-first LayerNorm and GELU
(widths ``dims[0] // 2`` then ``dims[0]``, i.e. 48 -> 96 for ConvNeXt-T/S). The rest is the ConvNeXt of
Liu et al. 2022 as in timm: four stages, a LayerNorm + 2x2 stride-2 convolution between stages, blocks
``dwconv 7x7 -> LayerNorm -> Linear(4d) -> GELU -> Linear(d) -> layer scale -> drop path + residual``.
As in the official ConvNeXt segmentation backbone, every returned stage output goes through its own
LayerNorm (``norm0`` .. ``norm3``) and stochastic depth grows linearly from 0 to ``drop_path_rate`` over
all blocks (0.4 for ConvNeXt-T, 0.3 for ConvNeXt-S in the official UPerNet configs, as in the paper).

Parameter names follow the timm ConvNeXt checkpoints with the ConvStem of Singh et al., so the published
classifier checkpoints load through a near-identity mapping (see ``robust_seg.models.convert.timm_convnext``):

    stem.stem.{0,3}.{weight,bias}              ConvStem convolutions (3x3, stride 2)
    stem.stem.{1,4}.{weight,bias}              ConvStem LayerNorms (channels first)
    stages.{i}.downsample.0.{weight,bias}      LayerNorm before downsampling (stages 1..3)
    stages.{i}.downsample.1.{weight,bias}      2x2 stride-2 convolution (stages 1..3)
    stages.{i}.blocks.{j}.conv_dw.{weight,bias}
    stages.{i}.blocks.{j}.norm.{weight,bias}
    stages.{i}.blocks.{j}.mlp.fc{1,2}.{weight,bias}
    stages.{i}.blocks.{j}.gamma                layer scale (initialised to ``layer_scale_init_value``)
    norm{i}.{weight,bias}                      output LayerNorms (segmentation only, not in classifiers)
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmseg.registry import MODELS
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvStem(nn.Module):
    """Singh et al. 2023 ConvStem: (3x3 conv stride 2, LayerNorm, GELU) x 2, overall stride 4."""

    def __init__(self, out_channels: int, hidden_channels: int, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(hidden_channels, eps=1e-6),
            nn.GELU(),
            nn.Conv2d(hidden_channels, out_channels, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(out_channels, eps=1e-6),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class Mlp(nn.Module):
    """Pointwise inverted bottleneck on channels-last features."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """x + DropPath(gamma * MLP(LN(dwconv7x7(x)))), the MLP acting on channels-last features."""

    def __init__(self, dim: int, drop_path: float, layer_scale_init_value: float, mlp_ratio: int = 4):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = (self.mlp(self.norm(y)) * self.gamma).permute(0, 3, 1, 2)
        return x + self.drop_path(y)


class ConvNeXtStage(nn.Module):
    """Optional downsampling (LayerNorm + 2x2 stride-2 conv) followed by ConvNeXt blocks."""

    def __init__(self, in_dim: int, dim: int, depth: int, drop_paths: Sequence[float],
                 layer_scale_init_value: float, downsample: bool):
        super().__init__()
        self.downsample = (nn.Sequential(LayerNorm2d(in_dim, eps=1e-6), nn.Conv2d(in_dim, dim, 2, stride=2))
                           if downsample else nn.Identity())
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim, rate, layer_scale_init_value) for rate in drop_paths])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


@MODELS.register_module()
class ConvNeXtConvStem(BaseModule):
    """ConvNeXt + ConvStem backbone returning the normalised outputs of the stages in ``out_indices``.

    Args:
        depths: blocks per stage (ConvNeXt-T: 3,3,9,3; ConvNeXt-S: 3,3,27,3).
        dims: channels per stage (T/S: 96,192,384,768).
        stem_channels: width of the first ConvStem convolution (default ``dims[0] // 2``, 48 for T/S).
        drop_path_rate: stochastic depth of the last block; rates grow linearly from 0 over all blocks.
        layer_scale_init_value: initial layer-scale ``gamma`` (1e-6 as in ConvNeXt).
        out_indices: stages whose features are returned (strides 4, 8, 16, 32).
    """

    def __init__(self, depths: Sequence[int] = (3, 3, 9, 3), dims: Sequence[int] = (96, 192, 384, 768),
                 stem_channels: int | None = None, in_channels: int = 3, drop_path_rate: float = 0.0,
                 layer_scale_init_value: float = 1e-6, out_indices: Sequence[int] = (0, 1, 2, 3),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(depths) != len(dims):
            raise ValueError(f"depths {tuple(depths)} and dims {tuple(dims)} must have the same length")
        self.out_indices = tuple(out_indices)
        self.stem = ConvStem(dims[0], stem_channels or dims[0] // 2, in_channels)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.stages = nn.ModuleList(
            ConvNeXtStage(dims[max(i - 1, 0)], dims[i], depths[i], rates[starts[i]:starts[i] + depths[i]],
                          layer_scale_init_value, downsample=i > 0)
            for i in range(len(depths)))
        for i in self.out_indices:
            self.add_module(f"norm{i}", LayerNorm2d(dims[i], eps=1e-6))

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) convolutions and linear layers with zero bias, as ConvNeXt;
        a pretrained classifier is loaded afterwards by ``robust_seg.models.build``."""
        if self.init_cfg is not None:
            return super().init_weights()
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outputs.append(getattr(self, f"norm{i}")(x))
        return tuple(outputs)
