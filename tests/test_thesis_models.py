"""The thesis' models (configs/model/{deeplabv3plus_r50,fcn_hrnetv2_w48,segformer_mit_b3,deeplabv3_r50,
deeplabv3_r34}.yaml) and whole-model MMSeg-zoo checkpoints (model.checkpoint_format).

No network here: the zoo checkpoints are imitated in their published layout ({"meta", "state_dict"} with the
segmentor's keys backbone.* / decode_head.* / auxiliary_head.*), and the key names checked are the ones of
MMSeg's own modules for the zoo configs.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from robust_seg.models import CheckpointError, ModelConfig, build_model
from robust_seg.models.build import build_segmentor, load_backbone

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
THESIS_MODELS = {  # name: (classes of its dataset, zoo keys that must exist, decode-head channels)
    "deeplabv3plus_r50": (21, ["backbone.stem.0.weight", "backbone.layer4.2.conv3.weight",
                               "decode_head.image_pool.1.conv.weight", "decode_head.aspp_modules.3.depthwise_conv.conv.weight",
                               "decode_head.c1_bottleneck.conv.weight", "decode_head.sep_bottleneck.1.pointwise_conv.conv.weight",
                               "auxiliary_head.convs.0.conv.weight", "auxiliary_head.conv_seg.weight"], 512),
    "fcn_hrnetv2_w48": (21, ["backbone.conv1.weight", "backbone.layer1.3.conv3.weight",
                             "backbone.transition3.3.0.0.weight", "backbone.stage4.2.fuse_layers.3.0.0.0.weight",
                             "decode_head.convs.0.conv.weight"], 720),
    "segformer_mit_b3": (19, ["backbone.layers.0.0.projection.weight", "backbone.layers.2.1.17.attn.attn.in_proj_weight",
                              "backbone.layers.3.1.2.ffn.layers.1.weight", "backbone.layers.3.2.weight",
                              "decode_head.convs.3.conv.weight", "decode_head.fusion_conv.conv.weight"], 256),
    "deeplabv3_r50": (19, ["backbone.stem.3.weight", "decode_head.image_pool.1.conv.weight",
                           "decode_head.aspp_modules.3.conv.weight", "decode_head.bottleneck.conv.weight",
                           "auxiliary_head.conv_seg.weight"], 512),
    "deeplabv3_r34": (21, ["backbone.conv1.weight", "backbone.layer3.5.conv2.weight",
                           "decode_head.aspp_modules.0.conv.weight", "decode_head.bottleneck.conv.weight"], 256),
}


def load_config(name: str):
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONFIGS / f"{name}.yaml"))


def zoo_checkpoint(model, path: Path) -> dict[str, torch.Tensor]:
    """Save ``model``'s segmentor as the MMSeg model zoo does: {"meta": ..., "state_dict": backbone.*, ...}."""
    state = {k: v.clone() for k, v in model.segmentor.state_dict().items()}
    torch.save({"meta": {"mmseg_version": "0.5.0", "CLASSES": ["a"] * model.num_classes}, "state_dict": state}, path)
    return state


@pytest.mark.slow
@pytest.mark.parametrize("name", list(THESIS_MODELS))
def test_thesis_model_builds_in_zoo_layout_and_backpropagates(name, tmp_path):
    num_classes, keys, channels = THESIS_MODELS[name]
    torch.manual_seed(0)
    model = build_model(load_config(name), num_classes).eval()
    own = model.segmentor.state_dict()
    assert set(keys) <= set(own), sorted(set(keys) - set(own))
    assert own["decode_head.conv_seg.weight"].shape == (num_classes, channels, 1, 1)
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    logits = model(images)
    assert logits.shape == (2, num_classes, 64, 64)
    (gradient,) = torch.autograd.grad(logits.logsumexp(1).sum(), images)
    assert gradient.abs().sum() > 0 and all(p.grad is None for p in model.parameters())
    # the zoo file loads into a fresh model through the config (checkpoint_format auto) and gives the same logits
    zoo_checkpoint(model, tmp_path / "zoo.pth")
    cfg = load_config(name)
    cfg.checkpoint = str(tmp_path / "zoo.pth")
    torch.manual_seed(1)
    loaded = build_model(cfg, num_classes).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(images), logits.detach(), atol=1e-5)


def test_thesis_configs_follow_mmseg_and_the_thesis():
    configs = {name: load_config(name) for name in THESIS_MODELS}
    assert configs["deeplabv3plus_r50"].mmseg.decode_head.type == "DepthwiseSeparableASPPHead"
    assert configs["deeplabv3_r50"].mmseg.decode_head.type == "ASPPHead"
    for name in ("deeplabv3plus_r50", "deeplabv3_r50"):  # MMSeg zoo: ResNetV1c, output stride 8
        backbone = configs[name].mmseg.backbone
        assert (backbone.type, backbone.depth, list(backbone.strides), list(backbone.dilations)) == \
            ("ResNetV1c", 50, [1, 2, 1, 1], [1, 1, 2, 4])
    assert list(configs["fcn_hrnetv2_w48"].mmseg.backbone.extra.stage4.num_channels) == [48, 96, 192, 384]
    mit = configs["segformer_mit_b3"].mmseg.backbone
    assert (mit.embed_dims, list(mit.num_layers)) == (64, [3, 4, 18, 3])
    assert (configs["segformer_mit_b3"].inference.mode, configs["segformer_mit_b3"].inference.stride) == ("slide", 768)
    r34 = configs["deeplabv3_r34"]  # thesis App. V.2: ResNet-34 encoder from ImageNet (torchvision layout)
    assert (r34.mmseg.backbone.type, r34.mmseg.backbone.depth, r34.backbone_format) == ("ResNet", 34, "torchvision_resnet")
    assert r34.backbone_checkpoints.clean.endswith("resnet34-333f7ec4.pth")
    for config in configs.values():
        assert config.checkpoint_format == "auto" and list(config.mean) == [0.485, 0.456, 0.406]


def torchvision_resnet34_keys() -> set[str]:
    """Keys of torchvision's resnet34 (BasicBlock, layers 3, 4, 6, 3) with its classifier."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "fc.weight", "fc.bias", *(f"bn1.{p}" for p in bn)}
    for layer, blocks in enumerate((3, 4, 6, 3), start=1):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            keys |= {f"{prefix}.conv1.weight", f"{prefix}.conv2.weight"}
            keys |= {f"{prefix}.bn{i}.{p}" for i in (1, 2) for p in bn}
            if block == 0 and layer > 1:
                keys |= {f"{prefix}.downsample.0.weight", *(f"{prefix}.downsample.1.{p}" for p in bn)}
    return keys


def test_deeplabv3_r34_backbone_loads_torchvision_resnet34(tmp_path):
    cfg = load_config("deeplabv3_r34")
    segmentor = build_segmentor(cfg.mmseg, 21)
    assert set(segmentor.backbone.state_dict()) == torchvision_resnet34_keys() - {"fc.weight", "fc.bias"}
    generator = torch.Generator().manual_seed(0)
    published = {k: (torch.randn(v.shape, generator=generator) if v.is_floating_point() else v)
                 for k, v in segmentor.backbone.state_dict().items()}
    published.update({"fc.weight": torch.randn(1000, 512), "fc.bias": torch.zeros(1000)})
    torch.save(published, tmp_path / "resnet34.pth")

    class Holder(torch.nn.Module):  # what load_backbone needs of a SegmentationModel
        def backbone(self):
            return segmentor.backbone

    load_backbone(Holder(), str(tmp_path / "resnet34.pth"), cfg.backbone_format)
    assert torch.equal(segmentor.backbone.layer4[2].conv2.weight,
                       published["layer4.2.conv2.weight"])


def small_model(seed: int, checkpoint: str | None = None, checkpoint_format: str = "auto"):
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONFIGS / "small_pspnet_resnet.yaml"))
    cfg.checkpoint, cfg.checkpoint_format = checkpoint, checkpoint_format
    torch.manual_seed(seed)
    return build_model(cfg, num_classes=5).eval()


def test_zoo_and_project_checkpoints_load_by_layout(tmp_path):
    source = small_model(0)
    state = zoo_checkpoint(source, tmp_path / "zoo.pth")
    torch.save(source.state_dict(), tmp_path / "project.pt")
    for path, checkpoint_format in (("zoo.pth", "auto"), ("zoo.pth", "mmseg"), ("project.pt", "auto"),
                                    ("project.pt", "project")):
        loaded = small_model(1, str(tmp_path / path), checkpoint_format)
        for key in ("backbone.layer3.1.conv2.weight", "decode_head.conv_seg.weight", "auxiliary_head.conv_seg.bias",
                    "backbone.bn1.running_mean"):
            assert torch.equal(loaded.segmentor.state_dict()[key], state[key]), (path, checkpoint_format, key)
    with pytest.raises(CheckpointError, match="missing keys: segmentor.*unexpected keys: backbone."):
        small_model(1, str(tmp_path / "zoo.pth"), "project")
    with pytest.raises(CheckpointError, match="unexpected keys: segmentor.segmentor."):
        small_model(1, str(tmp_path / "project.pt"), "mmseg")
    with pytest.raises(CheckpointError, match="checkpoint_format='caffe': unknown checkpoint format"):
        small_model(1, str(tmp_path / "zoo.pth"), "caffe")


def test_zoo_checkpoint_of_another_dataset_is_a_readable_error(tmp_path):
    zoo_checkpoint(small_model(0), tmp_path / "zoo.pth")
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONFIGS / "small_pspnet_resnet.yaml"))
    cfg.checkpoint = str(tmp_path / "zoo.pth")
    with pytest.raises(CheckpointError) as error:
        build_model(cfg, num_classes=19)  # a 5-class checkpoint for a 19-class dataset
    assert "\n" not in str(error.value) and "shape mismatch: segmentor.decode_head.conv_seg.weight" in str(error.value)
