"""Check the zoo's SEA-paper entries against the official code: the same weights, the same logits.

    python scripts/check_official_models.py --official PATH/TO/Robust-Segmentation

PATH is a checkout of github.com/nmndeep/Robust-Segmentation. The script builds the official UPerNet + ConvNeXt-T,
UPerNet + ConvNeXt-S and Segmenter + ViT-S from that checkout's modules with random weights (BatchNorm statistics,
layer scales and LayerNorms drawn away from their initial values so that every part matters). It converts each
state dict with the entry's converter (``robust_seg.models.convert.sea_upernet`` / ``sea_segmenter``), loads it
into the model the zoo entry builds, and prints the largest logit difference on random images in [0, 1].
``timm`` (and ``einops`` when absent) are replaced by the few pieces the official modules import. The
Segmenter's forward is composed from the official encoder and decoder as the official ``SegMenter.forward`` does for
inputs whose sides are multiples of 16 (which needs no padding).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _DropPath(nn.Module):  # evaluation mode: the identity
    def __init__(self, probability: float = 0.0):
        super().__init__()
        self.probability = probability

    def forward(self, x):
        return x


def _stub_dependencies() -> None:
    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.trunc_normal_ = _DropPath, nn.init.trunc_normal_
    vision_transformer = types.ModuleType("timm.models.vision_transformer")
    vision_transformer._load_weights = None
    sys.modules.update({"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                        "timm.models.layers": layers, "timm.models.vision_transformer": vision_transformer})
    if importlib.util.find_spec("einops") is None:
        einops = types.ModuleType("einops")

        def rearrange(x, pattern, h):  # "b (h w) n -> b n h w"
            batch, tokens, channels = x.shape
            return x.transpose(1, 2).reshape(batch, channels, h, tokens // h)

        einops.rearrange = rearrange
        sys.modules["einops"] = einops


def _official_modules(checkout: Path) -> dict[str, types.ModuleType]:
    """The official model modules, loaded without the package ``__init__`` files (which import the training code)."""
    for name in ("semseg", "semseg.models", "semseg.models.backbones", "semseg.models.heads"):
        package = types.ModuleType(name)
        package.__path__ = [str(checkout / name.replace(".", "/"))]
        sys.modules[name] = package
    loaded = {}
    for name in ("semseg.models.backbones.convnext_orig", "semseg.models.uperforseg",
                 "semseg.models.backbones.vit_encoder", "semseg.models.heads.segmenter_decoder"):
        if name == "semseg.models.uperforseg":
            sys.modules["semseg.models.backbones"].ConvNeXt = loaded["semseg.models.backbones.convnext_orig"].ConvNeXt
        spec = importlib.util.spec_from_file_location(name, checkout / (name.replace(".", "/") + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded[name] = module
    return loaded


def _perturb(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)) or type(module).__name__ == "LayerNorm":
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
        for name, parameter in model.named_parameters():
            if name.endswith("gamma"):
                parameter.normal_(0.3, 0.1)
    return model.eval()


class _OfficialSegmenter(nn.Module):
    """The official SegMenter.forward for inputs whose sides are multiples of the patch size."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = images.shape[2:]
        masks = self.decoder(self.encoder(images, pre_neck=True)[:, 1:], size)  # without the class token
        return nn.functional.interpolate(masks, size=size, mode="bilinear")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of nmndeep/Robust-Segmentation")
    args = parser.parse_args(argv)
    if not (args.official / "semseg" / "models" / "uperforseg.py").is_file():
        parser.error(f"{args.official} is not a checkout of nmndeep/Robust-Segmentation (no semseg/models/uperforseg.py)")
    _stub_dependencies()
    modules = _official_modules(args.official)

    from robust_seg.api import compose
    from robust_seg.models import build_model
    from robust_seg.models.checkpoints import load_matching, segmentation_state

    torch.manual_seed(0)
    upernet = modules["semseg.models.uperforseg"].UperNetForSemanticSegmentation
    vit, decoder = modules["semseg.models.backbones.vit_encoder"], modules["semseg.models.heads.segmenter_decoder"]
    cases = [
        ("pirat-upernet-convnext-t-voc", "pascal_voc", upernet("ConvNext-T_CVST", n_cls=21, pretrained=None),
         (96, 128)),
        ("pirat-upernet-convnext-s-ade20k", "ade20k", upernet("ConvNext-S_CVST", n_cls=151, pretrained=None),
         (96, 128)),
        ("pirat-segmenter-vit-s-ade20k", "ade20k", _OfficialSegmenter(  # utils.load_config_segmenter's settings
            vit.VisionTransformer(image_size=(512, 512), patch_size=16, n_layers=12, d_model=384, d_ff=1536,
                                  n_heads=6, n_cls=1000, dropout=0.0, drop_path_rate=0.1),
            decoder.MaskTransformer(n_cls=151, patch_size=16, d_encoder=384, n_layers=2, n_heads=6, d_model=384,
                                    d_ff=1536, drop_path_rate=0.0, dropout=0.1)), (512, 640)),
    ]
    worst = 0.0
    for entry, dataset, official, size in cases:
        official = _perturb(official)
        cfg = compose("evaluate", [f"model=zoo/{entry}", f"dataset={dataset}", "model.checkpoint=null"])
        ours = build_model(cfg.model, cfg.dataset.num_classes).eval()
        load_matching(ours, segmentation_state(official.state_dict(), cfg.model.checkpoint_format, entry), entry)
        images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected, actual = official(images), ours(images)
        difference = float((expected - actual).abs().max())
        agreement = float((expected.argmax(1) == actual.argmax(1)).double().mean())
        worst = max(worst, difference)
        print(f"{entry}: {tuple(images.shape)} -> max |logit difference| {difference:.2e} (logits up to "
              f"{float(expected.abs().max()):.2f}); same prediction on {100 * agreement:.4f}% of the pixels")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
