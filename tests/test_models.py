"""The paper's models (configs/model/*.yaml), the ConvNeXt+ConvStem backbone and the checkpoint key converters.

Reference checkpoints are generated here in the published key layouts (timm ConvNeXt + ConvStem of
Singh et al. 2023, timm ViT-S/16, torchvision / robustness-library ResNet-50), with random values.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from robust_seg.models import CheckpointError, build_model
from robust_seg.models.checkpoints import load_matching
from robust_seg.models.convert import CONVERTERS

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
PAPER_MODELS = ["upernet_convnext_t", "upernet_convnext_s", "segmenter_vit_s", "pspnet_r50"]
SMALL_MODELS = ["small_upernet_convnext", "small_segmenter_vit", "small_pspnet_resnet"]


def load_config(name: str):
    """configs/model/<name>.yaml as the entry points compose it (a config may extend another)."""
    from tests.conftest import compose_config

    return compose_config("evaluate", [f"model={name}", "model.random_weights=true"]).model


def build(name: str, num_classes: int = 21):
    torch.manual_seed(0)
    return build_model(load_config(name), num_classes=num_classes)


# --- published key layouts ---------------------------------------------------------------------------

def timm_convnext_convstem_shapes(depths, dims, stem_width=48, num_classes=1000) -> dict[str, tuple]:
    """timm ConvNeXt whose stem is the ConvStem (ConvBlock1) of Singh et al. 2023, with its classifier head."""
    shapes = {"stem.stem.0.weight": (stem_width, 3, 3, 3), "stem.stem.0.bias": (stem_width,),
              "stem.stem.1.weight": (stem_width,), "stem.stem.1.bias": (stem_width,),
              "stem.stem.3.weight": (dims[0], stem_width, 3, 3), "stem.stem.3.bias": (dims[0],),
              "stem.stem.4.weight": (dims[0],), "stem.stem.4.bias": (dims[0],)}
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            shapes.update({f"stages.{i}.downsample.0.weight": (dims[i - 1],),
                           f"stages.{i}.downsample.0.bias": (dims[i - 1],),
                           f"stages.{i}.downsample.1.weight": (dim, dims[i - 1], 2, 2),
                           f"stages.{i}.downsample.1.bias": (dim,)})
        for j in range(depth):
            block = f"stages.{i}.blocks.{j}"
            shapes.update({f"{block}.gamma": (dim,), f"{block}.conv_dw.weight": (dim, 1, 7, 7),
                           f"{block}.conv_dw.bias": (dim,), f"{block}.norm.weight": (dim,),
                           f"{block}.norm.bias": (dim,), f"{block}.mlp.fc1.weight": (4 * dim, dim),
                           f"{block}.mlp.fc1.bias": (4 * dim,), f"{block}.mlp.fc2.weight": (dim, 4 * dim),
                           f"{block}.mlp.fc2.bias": (dim,)})
    shapes.update({"head.norm.weight": (dims[-1],), "head.norm.bias": (dims[-1],),
                   "head.fc.weight": (num_classes, dims[-1]), "head.fc.bias": (num_classes,)})
    return shapes


def timm_vit_shapes(embed=384, depth=12, patch=16, img=224, num_classes=1000) -> dict[str, tuple]:
    """timm VisionTransformer (cls token, no layer scale), e.g. vit_small_patch16_224."""
    tokens = 1 + (img // patch) ** 2
    shapes = {"cls_token": (1, 1, embed), "pos_embed": (1, tokens, embed),
              "patch_embed.proj.weight": (embed, 3, patch, patch), "patch_embed.proj.bias": (embed,),
              "norm.weight": (embed,), "norm.bias": (embed,),
              "head.weight": (num_classes, embed), "head.bias": (num_classes,)}
    for i in range(depth):
        shapes.update({f"blocks.{i}.norm1.weight": (embed,), f"blocks.{i}.norm1.bias": (embed,),
                       f"blocks.{i}.attn.qkv.weight": (3 * embed, embed), f"blocks.{i}.attn.qkv.bias": (3 * embed,),
                       f"blocks.{i}.attn.proj.weight": (embed, embed), f"blocks.{i}.attn.proj.bias": (embed,),
                       f"blocks.{i}.norm2.weight": (embed,), f"blocks.{i}.norm2.bias": (embed,),
                       f"blocks.{i}.mlp.fc1.weight": (4 * embed, embed), f"blocks.{i}.mlp.fc1.bias": (4 * embed,),
                       f"blocks.{i}.mlp.fc2.weight": (embed, 4 * embed), f"blocks.{i}.mlp.fc2.bias": (embed,)})
    return shapes


def torchvision_resnet50_shapes(num_classes=1000, with_counters=True) -> dict[str, tuple]:
    """torchvision ResNet-50 (Bottleneck, layers 3,4,6,3, stride in conv2)."""
    def bn(name, channels):
        entries = {f"{name}.weight": (channels,), f"{name}.bias": (channels,),
                   f"{name}.running_mean": (channels,), f"{name}.running_var": (channels,)}
        if with_counters:
            entries[f"{name}.num_batches_tracked"] = ()
        return entries

    shapes = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    in_channels = 64
    for layer, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for j in range(blocks):
            prefix = f"layer{layer}.{j}"
            shapes.update({f"{prefix}.conv1.weight": (planes, in_channels, 1, 1), **bn(f"{prefix}.bn1", planes),
                           f"{prefix}.conv2.weight": (planes, planes, 3, 3), **bn(f"{prefix}.bn2", planes),
                           f"{prefix}.conv3.weight": (4 * planes, planes, 1, 1), **bn(f"{prefix}.bn3", 4 * planes)})
            if j == 0:
                shapes.update({f"{prefix}.downsample.0.weight": (4 * planes, in_channels, 1, 1),
                               **bn(f"{prefix}.downsample.1", 4 * planes)})
            in_channels = 4 * planes
    shapes.update({"fc.weight": (num_classes, 2048), "fc.bias": (num_classes,)})
    return shapes


def random_state(shapes: dict[str, tuple], prefix: str = "", seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {prefix + key: (torch.randint(0, 100, shape, generator=generator) if key.endswith("num_batches_tracked")
                           else torch.randn(shape, generator=generator))
            for key, shape in shapes.items()}


# --- the paper's models --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_models():
    return {}


def paper_model(cache: dict, name: str):
    if name not in cache:
        cache[name] = build(name)
    return cache[name]


@contextlib.contextmanager
def restored(module: torch.nn.Module):
    """The converter tests load random checkpoints (BatchNorm variances below 0 among them) into the shared models;
    the other tests must see the weights as built, whatever order the tests run in."""
    saved = {key: value.clone() for key, value in module.state_dict().items()}
    try:
        yield module
    finally:
        module.load_state_dict(saved)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_model_forward_backward(paper_models, name):
    model = paper_model(paper_models, name).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    logits = model(images)
    assert logits.shape == (2, 21, 64, 64)
    gradient, = torch.autograd.grad(logits.logsumexp(1).sum(), images)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_paper_model_sizes(paper_models):
    """Paper App. B.2: UPerNet + ConvNeXt-T has 60 M parameters, Segmenter + ViT-S 26 M; the ConvNeXt-T
    backbone is timm's convnext_tiny (28.59 M) minus its head, with the ConvStem instead of the patchify stem."""
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    upernet = paper_model(paper_models, "upernet_convnext_t")
    segmenter = paper_model(paper_models, "segmenter_vit_s")
    assert 59.5e6 < count(upernet) < 60.5e6  # 60.18 M
    assert 25.5e6 < count(segmenter) < 26.5e6  # 25.98 M, position embeddings of the 512-px grid included
    reference = timm_convnext_convstem_shapes((3, 3, 9, 3), (96, 192, 384, 768))
    classifier = sum(torch.Size(s).numel() for k, s in reference.items() if not k.startswith("head."))
    output_norms = 2 * (96 + 192 + 384 + 768)
    assert count(upernet.backbone()) == classifier + output_norms


def test_paper_configs_follow_the_paper():
    """Drop path 0.4 (T) / 0.3 (S) as the official ConvNeXt UPerNet configs; layer scale 1e-6; ViT-S/16 at 512."""
    t, s = load_config("upernet_convnext_t").mmseg, load_config("upernet_convnext_s").mmseg
    assert (t.backbone.drop_path_rate, s.backbone.drop_path_rate) == (0.4, 0.3)
    assert list(t.backbone.depths) == [3, 3, 9, 3] and list(s.backbone.depths) == [3, 3, 27, 3]
    assert t.backbone.layer_scale_init_value == 1e-6 and t.decode_head.channels == 512
    vit = load_config("segmenter_vit_s")
    assert (vit.mmseg.backbone.embed_dims, vit.mmseg.backbone.num_layers, vit.mmseg.backbone.num_heads) == (384, 12, 6)
    assert list(vit.mmseg.backbone.img_size) == [512, 512] and vit.mmseg.decode_head.num_layers == 2
    psp = load_config("pspnet_r50").mmseg.backbone
    assert psp.type == "ResNet" and list(psp.dilations) == [1, 1, 2, 4] and list(psp.strides) == [1, 2, 1, 1]


# --- converters ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,depths", [("upernet_convnext_t", (3, 3, 9, 3)), ("upernet_convnext_s", (3, 3, 27, 3))])
def test_timm_convnext_converter(paper_models, name, depths):
    with restored(paper_model(paper_models, name).backbone()) as backbone:
        published = random_state(timm_convnext_convstem_shapes(depths, (96, 192, 384, 768)), prefix="module.")
        state = CONVERTERS["timm_convnext"](published, backbone)
        load_matching(backbone, state, "reference timm ConvNeXt + ConvStem")
        own = backbone.state_dict()
        for key in ["stem.stem.0.weight", "stem.stem.4.bias", "stages.1.downsample.1.weight",
                    f"stages.2.blocks.{depths[2] - 1}.mlp.fc1.weight", "stages.3.blocks.2.gamma",
                    "stages.0.blocks.0.conv_dw.weight"]:
            assert torch.equal(own[key], published["module." + key]), key
        assert torch.equal(own["norm3.weight"], torch.ones(768)) and torch.equal(own["norm0.bias"], torch.zeros(96))


def test_timm_vit_converter(paper_models):
    with restored(paper_model(paper_models, "segmenter_vit_s").backbone()) as backbone:
        published = random_state(timm_vit_shapes())
        state = CONVERTERS["timm_vit"](published, backbone)
        load_matching(backbone, state, "reference timm ViT-S/16")
        own = backbone.state_dict()
        pairs = {"layers.3.attn.attn.in_proj_weight": "blocks.3.attn.qkv.weight",
                 "layers.11.attn.attn.out_proj.bias": "blocks.11.attn.proj.bias",
                 "layers.0.ffn.layers.0.0.weight": "blocks.0.mlp.fc1.weight",
                 "layers.5.ffn.layers.1.weight": "blocks.5.mlp.fc2.weight",
                 "layers.7.ln2.weight": "blocks.7.norm2.weight", "ln1.bias": "norm.bias",
                 "patch_embed.projection.weight": "patch_embed.proj.weight", "cls_token": "cls_token"}
        for mine, theirs in pairs.items():
            assert torch.equal(own[mine], published[theirs]), mine
        assert own["pos_embed"].shape == (1, 1 + 32 * 32, 384)
        assert torch.equal(own["pos_embed"][:, 0], published["pos_embed"][:, 0])  # cls token's embedding kept
        # bicubic resizing of the 14x14 grid: constants stay constant, corners stay close to the corners
        constant = {**published, "pos_embed": torch.cat([torch.zeros(1, 1, 384), torch.full((1, 196, 384), 0.5)], 1)}
        resized = CONVERTERS["timm_vit"](constant, backbone)["pos_embed"]
        torch.testing.assert_close(resized[:, 1:], torch.full((1, 1024, 384), 0.5))
        ramp = torch.arange(14.0).repeat(14)  # x coordinate of each patch, row-major
        linear = {**published, "pos_embed": torch.cat([torch.zeros(1, 1), ramp[None]], 1)[..., None].expand(1, 197, 384)}
        resized = CONVERTERS["timm_vit"](linear, backbone)["pos_embed"][0, 1:, 0].reshape(32, 32)
        assert (resized[:, 1:] >= resized[:, :-1] - 1e-4).all() and (resized[0] - resized[-1]).abs().max() < 1e-4


@pytest.mark.parametrize("layout", ["robustness", "torchvision_v1"])
def test_torchvision_resnet_converter(paper_models, layout):
    """Salman et al. 2020 (robustness library: module.model./module.attacker.model./module.normalizer.) and
    plain torchvision checkpoints (the old ones without BatchNorm counters)."""
    with restored(paper_model(paper_models, "pspnet_r50").backbone()) as backbone:
        if layout == "robustness":
            classifier = random_state(torchvision_resnet50_shapes(), prefix="module.model.")
            published = {**classifier,
                         **random_state(torchvision_resnet50_shapes(), prefix="module.attacker.model.", seed=2),
                         "module.normalizer.new_mean": torch.zeros(3, 1, 1), "module.normalizer.new_std": torch.ones(3, 1, 1)}
            lookup = lambda key: published["module.model." + key]  # noqa: E731
        else:
            published = random_state(torchvision_resnet50_shapes(with_counters=False))
            lookup = published.__getitem__
        state = CONVERTERS["torchvision_resnet"](published, backbone)
        load_matching(backbone, state, f"reference ResNet-50 ({layout})")
        own = backbone.state_dict()
        for key in ["conv1.weight", "bn1.running_var", "layer3.5.conv2.weight", "layer4.0.downsample.0.weight",
                    "layer2.0.downsample.1.bias", "layer4.2.bn3.weight"]:
            assert torch.equal(own[key], lookup(key)), key


def test_converted_checkpoint_initialises_backbone_from_file(tmp_path):
    """End to end through build_model: a DDP-saved timm ConvNeXt + ConvStem file initialises the small model."""
    cfg = load_config("small_upernet_convnext")
    backbone_cfg = cfg.mmseg.backbone
    published = random_state(timm_convnext_convstem_shapes(backbone_cfg.depths, backbone_cfg.dims,
                                                           stem_width=backbone_cfg.dims[0] // 2), prefix="module.")
    path = tmp_path / "classifier.pth"
    torch.save({"state_dict": published, "epoch": 3}, path)
    cfg.backbone_format, cfg.backbone_init = "timm_convnext", "robust"
    cfg.backbone_checkpoints = {"robust": str(path)}
    model = build_model(cfg, num_classes=6)
    assert torch.equal(model.backbone().stages[2].blocks[1].mlp.fc2.weight,
                       published["module.stages.2.blocks.1.mlp.fc2.weight"])


def test_mmseg_converter_takes_the_backbone_of_a_segmentor_checkpoint():
    source, target = build("small_upernet_convnext", num_classes=6), build("small_upernet_convnext", num_classes=3)
    with torch.no_grad():
        for parameter in source.backbone().parameters():
            parameter.normal_()
    checkpoint = {**{"backbone." + k: v for k, v in source.backbone().state_dict().items()},
                  "decode_head.conv_seg.weight": torch.zeros(6, 48, 1, 1)}
    state = CONVERTERS["mmseg"](checkpoint, target.backbone())
    load_matching(target.backbone(), state, "MMSeg segmentor checkpoint")
    assert torch.equal(target.backbone().norm2.weight, source.backbone().norm2.weight)
    assert torch.equal(target.backbone().stages[3].blocks[0].mlp.fc1.bias, source.backbone().stages[3].blocks[0].mlp.fc1.bias)
    plain = CONVERTERS["mmseg"](source.backbone().state_dict(), target.backbone())
    assert plain.keys() == target.backbone().state_dict().keys()


def test_mismatching_checkpoint_is_a_readable_error(paper_models):
    backbone = paper_model(paper_models, "upernet_convnext_t").backbone()
    published = random_state(timm_convnext_convstem_shapes((3, 3, 27, 3), (96, 192, 384, 768)))  # a ConvNeXt-S
    published.pop("stages.0.blocks.1.gamma")
    state = CONVERTERS["timm_convnext"](published, backbone)
    with pytest.raises(CheckpointError) as error:
        load_matching(backbone, state, "ConvNeXt-S checkpoint")
    message = str(error.value)
    assert "\n" not in message
    assert "missing keys: stages.0.blocks.1.gamma" in message
    assert "unexpected keys: stages.2.blocks.9." in message


def test_unknown_backbone_format_is_rejected(tmp_path):
    cfg = load_config("small_upernet_convnext")
    torch.save({}, tmp_path / "empty.pth")
    cfg.backbone_format, cfg.backbone_init = "caffe", "clean"
    cfg.backbone_checkpoints = {"clean": str(tmp_path / "empty.pth")}
    with pytest.raises(CheckpointError, match="unknown backbone_format 'caffe'"):
        build_model(cfg, num_classes=6)


# --- the backbone ----------------------------------------------------------------------------------------

def test_convnext_convstem_backbone_structure():
    from robust_seg.models import register_modules

    register_modules()
    from robust_seg.models.convnext import ConvNeXtConvStem

    torch.manual_seed(0)
    backbone = ConvNeXtConvStem(depths=(1, 2, 3, 1), dims=(8, 16, 32, 64), drop_path_rate=0.5)
    backbone.init_weights()
    features = backbone.eval()(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [(2, 8, 16, 24), (2, 16, 8, 12), (2, 32, 4, 6), (2, 64, 2, 3)]
    # each output is layer-normalised over channels (output norms start at weight 1, bias 0)
    torch.testing.assert_close(features[1].mean(1), torch.zeros(2, 8, 12), atol=1e-5, rtol=0)
    rates = [block.drop_path.drop_prob for stage in backbone.stages[1:] for block in stage.blocks]
    assert rates == pytest.approx([0.5 * k / 6 for k in range(1, 7)])  # linear over all 7 blocks, first is 0
    assert isinstance(backbone.stages[0].blocks[0].drop_path, torch.nn.Identity)
    assert torch.equal(backbone.stages[2].blocks[0].gamma, torch.full((32,), 1e-6))
    assert backbone.stem.stem[0].stride == (2, 2) and backbone.stem.stem[0].out_channels == 4
    # stochastic depth is active in training only
    torch.testing.assert_close(backbone(torch.ones(1, 3, 32, 32))[3], backbone(torch.ones(1, 3, 32, 32))[3])


# --- small CPU variants ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SMALL_MODELS)
def test_small_models_run(name):
    model = build(name, num_classes=6)
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    logits, auxiliary = model.train().forward_train(images)
    assert logits.shape == (4, 6, 64, 64)
    assert (auxiliary is None) == (name == "small_segmenter_vit")
    gradient, = torch.autograd.grad(model.eval()(images).sum(), images)
    assert torch.isfinite(gradient).all()


def test_small_upernet_convnext_fits_the_embedded_checkpoint_budget():
    model = build("small_upernet_convnext", num_classes=6)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert size <= 5e6


def test_the_finiteness_check_of_checkpoints_finds_every_non_finite_value_and_survives_overflowing_sums():
    from robust_seg.models.checkpoints import all_finite

    values = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert all_finite(values) and all_finite(torch.zeros(0))
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = values.clone()
        broken[567] = bad
        assert not all_finite(broken)
    assert not all_finite(torch.tensor([float("inf"), -float("inf")]))  # a NaN sum
    large = torch.full((10,), 3e38)  # finite values whose sum overflows: checked value by value
    assert not bool(torch.isfinite(large.sum())) and all_finite(large)
    assert all_finite(torch.full((100,), 60000.0, dtype=torch.float16))
