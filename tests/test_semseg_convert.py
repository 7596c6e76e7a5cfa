"""The semseg (hszhao) checkpoint converter: DDC-AT / AT PSPNet and DeepLabV3 of Xu et al. 2021
(github.com/dvlab-research/Robust-Semantic-Segmentation) -> configs/model/{pspnet,deeplabv3}_r50_ddcat.yaml
(model.checkpoint_format semseg_pspnet / semseg_deeplabv3, robust_seg/models/convert.py).

No network and no published file here: the authors' models are written out below from their architecture
(``model/resnet.py``: the deep-base ResNet-50; ``model/pspnet.py``: PPM, ASPP, the cls / aux heads and DDC-AT's
cls1 / mask1 / cls2 / aux_cls1 branches) with random weights and random BatchNorm statistics, saved as their
training script saves them ({"epoch", "state_dict", "optimizer"} with DataParallel's ``module.`` prefix), loaded
through the model configs, and compared: exact key sets and shapes, and equal outputs (stem + layer1 against a
functional deep-stem forward, and the whole network against the reference module's eval forward).
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from robust_seg.models import CheckpointError, ModelConfig, build_model
from robust_seg.models.build import load_segmentation_checkpoint
from robust_seg.models.convert import SEMSEG_UNUSED, semseg
from tests.conftest import ROOT, compose_config

CONFIGS = ROOT / "configs" / "model"
CLASSES = 5
MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


# ----------------------------------------------------------------------------------------------- the reference
def _conv_bn_relu(cin, cout, kernel, **kwargs):
    return [nn.Conv2d(cin, cout, kernel, bias=False, **kwargs), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class SemsegNet(nn.Module):
    """hszhao/semseg PSPNet or DeepLabV3 on the deep-base ResNet-50 (output stride 8), as in Xu et al.'s code:
    ``ddcat`` adds their mask1 / cls2 branches and names the heads cls1 / aux_cls1."""

    def __init__(self, head: str, ddcat: bool, classes: int = CLASSES):
        super().__init__()
        self.head = head
        self.layer0 = nn.Sequential(*_conv_bn_relu(3, 64, 3, stride=2, padding=1), *_conv_bn_relu(64, 64, 3, padding=1),
                                    *_conv_bn_relu(64, 128, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1))
        inplanes = 128
        for index, (planes, blocks, stride, dilation) in enumerate(
                ((64, 3, 1, 1), (128, 4, 2, 1), (256, 6, 1, 2), (512, 3, 1, 4)), start=1):
            layers = []
            for block in range(blocks):
                downsample = None
                if block == 0:  # semseg: a downsample in every first block (stride 1 in layers 3 and 4)
                    downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                               nn.BatchNorm2d(planes * 4))
                layers.append(Bottleneck(inplanes, planes, stride if block == 0 else 1, dilation, downsample))
                inplanes = planes * 4
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        if head == "ppm":
            self.ppm = nn.Module()
            self.ppm.features = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), *_conv_bn_relu(2048, 512, 1))
                                              for b in (1, 2, 3, 6))
            fea, mid, kernel, aux_kernel = 4096, 512, 3, 3
        else:
            self.aspp = nn.Module()
            self.aspp.convs = nn.ModuleList(
                [nn.Sequential(*_conv_bn_relu(2048, 256, 1))] +
                [nn.Sequential(*_conv_bn_relu(2048, 256, 3, padding=r, dilation=r)) for r in (6, 12, 18)] +
                [nn.Sequential(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(2048, 256, 1))])
            fea, mid, kernel, aux_kernel = 1280, 256, 1, 1
        aux_mid = 256

        def classifier(cin, width, k, out):
            return nn.Sequential(*_conv_bn_relu(cin, width, k, padding=k // 2), nn.Dropout2d(0.1),
                                 nn.Conv2d(width, out, 1))
        names = ("cls1", "aux_cls1") if ddcat else ("cls", "aux")
        self.cls_name = names[0]
        setattr(self, names[0], classifier(fea, mid, kernel, classes))
        setattr(self, names[1], classifier(1024, aux_mid, aux_kernel, classes))
        if ddcat:
            self.mask1 = classifier(fea, mid, kernel, 2)
            self.cls2 = classifier(fea, mid, kernel, classes)

    def stem_and_layer1(self, x):
        return self.layer1(self.layer0(x))

    def forward(self, x):  # eval forward of the authors' models (DDC-AT: the normal branch cls1)
        size = x.shape[-2:]
        x = self.layer4(self.layer3(self.layer2(self.stem_and_layer1(x))))
        if self.head == "ppm":
            x = torch.cat([x] + [F.interpolate(f(x), x.shape[-2:], mode="bilinear", align_corners=True)
                                 for f in self.ppm.features], 1)
        else:
            x = torch.cat([c(x) for c in self.aspp.convs[:-1]] + [F.interpolate(
                self.aspp.convs[-1](x), x.shape[-2:], mode="bilinear", align_corners=True)], 1)
        x = getattr(self, self.cls_name)(x)
        return F.interpolate(x, size, mode="bilinear", align_corners=True)


def _randomise(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif tensor.dim() == 1:  # BN weight
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:  # conv weights, scaled to keep activations of order 1 through 50 layers
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (1.0 / fan_in) ** 0.5)


@functools.lru_cache(maxsize=None)
def _reference(head: str, ddcat: bool) -> SemsegNet:
    """The authors' network with random weights, built once per (head, ddcat) in this process (tests only read it)."""
    torch.manual_seed(0)
    reference = SemsegNet(head, ddcat)
    _randomise(reference, seed=1)
    return reference.eval()


def _save_as_authors(reference: nn.Module, path: Path, drop_counters: bool = False) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in reference.state_dict().items()
             if not (drop_counters and k.endswith("num_batches_tracked"))}
    torch.save({"epoch": 50, "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}}, path)
    return state


def _config(name: str, **changes):
    config = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONFIGS / f"{name}.yaml"))
    for key, value in changes.items():
        OmegaConf.update(config, key, value)
    return config


CASES = {  # model config: (semseg head, checkpoint_format)
    "pspnet_r50_ddcat": ("ppm", "semseg_pspnet"),
    "deeplabv3_r50_ddcat": ("aspp", "semseg_deeplabv3"),
}


# ----------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("ddcat", [True, False], ids=["ddcat", "plain"])
@pytest.mark.parametrize("name", list(CASES))
def test_semseg_checkpoint_loads_strictly_and_computes_the_authors_function(name, ddcat, tmp_path):
    head, checkpoint_format = CASES[name]
    reference = _reference(head, ddcat)
    path = tmp_path / "train_epoch_50.pth"
    source = _save_as_authors(reference, path, drop_counters=ddcat)  # DDC-AT's SyncBN files lack the counters

    # Every key is used (DDC-AT's unused branches excepted), every parameter filled, every shape equal.
    converted = semseg(source, checkpoint_format)
    model = build_model(_config(name), CLASSES).eval()
    own = model.segmentor.state_dict()
    assert set(converted) == set(own)
    assert all(tuple(converted[k].shape) == tuple(own[k].shape) for k in own)
    dropped = {k for k in source if k.startswith(SEMSEG_UNUSED)}
    assert bool(dropped) == ddcat and all(k.startswith(("mask1.", "cls2.")) for k in dropped)
    if not ddcat:
        assert len(converted) == len(source)  # one to one

    # checkpoint_format=auto recognises the layout from the keys alone and loads the same tensors
    load_segmentation_checkpoint(model, str(path), "auto")
    for key, value in model.segmentor.state_dict().items():
        if not key.endswith("num_batches_tracked") and key != "decode_head.bottleneck.conv.weight":
            assert torch.equal(value, converted[key]), key

    model = build_model(_config(name, checkpoint=str(path)), CLASSES).eval()  # through the config's format
    for key, value in model.segmentor.state_dict().items():
        if not key.endswith("num_batches_tracked") and key != "decode_head.bottleneck.conv.weight":
            assert torch.equal(value, converted[key]), key

    images = torch.rand(2, 3, 57, 57)  # 8k + 1, the authors' test sizes
    normalised = (images - MEAN) / STD
    with torch.no_grad():
        # stem + layer1 against a functional deep-stem forward with the checkpoint's own tensors
        x = normalised
        for conv, bn, stride in ((0, 1, 2), (3, 4, 1), (6, 7, 1)):
            x = F.conv2d(x, source[f"layer0.{conv}.weight"], stride=stride, padding=1)
            x = F.relu(F.batch_norm(x, source[f"layer0.{bn}.running_mean"], source[f"layer0.{bn}.running_var"],
                                    source[f"layer0.{bn}.weight"], source[f"layer0.{bn}.bias"], eps=1e-5))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        backbone = model.segmentor.backbone
        ours = backbone.layer1(backbone.maxpool(backbone.stem(normalised)))
        torch.testing.assert_close(backbone.maxpool(backbone.stem(normalised)), x, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours, reference.stem_and_layer1(normalised), rtol=1e-5, atol=1e-5)
        # the whole network: logits of the converted model = the authors' eval forward
        expected = reference(normalised)
        logits = model(images)
    assert logits.shape == expected.shape == (2, CLASSES, 57, 57)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert expected.std() > 0.1  # a non-degenerate comparison


def _one_line_error(function, *args) -> str:
    with pytest.raises(CheckpointError) as error:
        function(*args)
    message = str(error.value)
    assert "\n" not in message
    return message


def _shapes_only(head: str, path: Path) -> dict[str, torch.Tensor]:
    """An authors' checkpoint whose tensors have the right keys, shapes and dtypes and no content (each one an
    expanded scalar: bytes, not the 350 MB of a real file), from a network built on the meta device. The checks
    below refuse a file by its keys and shapes before any value is read."""
    with torch.device("meta"):
        shapes = SemsegNet(head, ddcat=True).state_dict()
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in shapes.items()}
    torch.save({"epoch": 50, "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}}, path)
    return state


def test_bad_input_gives_one_line_naming_the_problem_and_the_fix(tmp_path):
    psp_path = tmp_path / "psp.pth"
    source = _shapes_only("ppm", psp_path)
    assert psp_path.stat().st_size < 2_000_000

    # the right format, the wrong model config (plain 7x7 stem, contracted dilation)
    plain = build_model(_config("pspnet_r50"), CLASSES)
    message = _one_line_error(load_segmentation_checkpoint, plain, str(psp_path), "semseg_pspnet")
    assert "does not match the model" in message and "need model=pspnet_r50_ddcat" in message

    # the other number of classes (e.g. a Cityscapes file for a VOC row)
    voc = build_model(_config("pspnet_r50_ddcat"), CLASSES + 1)
    message = _one_line_error(load_segmentation_checkpoint, voc, str(psp_path), "semseg_pspnet")
    assert "decode_head.conv_seg.weight" in message

    def keys_only(name: str, keys) -> str:
        """A checkpoint with these keys and one-element tensors: the layout checks below read the keys alone (they
        refuse the file before any shape is compared), so the 100 MB files they would otherwise need are spared."""
        path = tmp_path / name
        torch.save({"state_dict": {key: torch.zeros(1) for key in keys}}, path)
        return str(path)

    # an MMSeg-layout checkpoint given as semseg
    mmseg_layout = keys_only("mmseg.pth", voc.segmentor.state_dict())
    message = _one_line_error(load_segmentation_checkpoint, voc, mmseg_layout, "semseg_pspnet")
    assert "not a semseg (hszhao / DDC-AT) checkpoint: no layer0.*" in message
    assert "backbone" in message and "model.checkpoint_format=auto" in message

    # a DeepLabV3 given as PSPNet (the authors' DeepLabV3 keys)
    aspp = str(tmp_path / "aspp.pth")
    _shapes_only("aspp", Path(aspp))
    message = _one_line_error(load_segmentation_checkpoint, voc, aspp, "semseg_pspnet")
    assert "without ppm.* keys" in message and "model.checkpoint_format=semseg_deeplabv3" in message

    # a key the converter does not know
    odd = keys_only("odd.pth", [*source, "psa.conv.weight"])
    message = _one_line_error(load_segmentation_checkpoint, voc, odd, "semseg_pspnet")
    assert "keys the converter does not know: psa.conv.weight" in message


def test_ddcat_rows_use_the_semseg_models():
    rows = {
        ("table1_sea_vs_baselines", "+experiment/table1_rows=voc_pspnet_r50_ddcat"): "pspnet_r50_ddcat",
        ("table3_robust_models", "+experiment/table_rows=voc_pspnet_r50_ddcat"): "pspnet_r50_ddcat",
        ("table3_robust_models", "+experiment/table_rows=voc_pspnet_r50_at_xu"): "pspnet_r50_ddcat",
        ("thesis_table5_2_minimal_norm_ddcat", "+experiment/thesis_table5_2_rows=voc_deeplabv3_r50_ddcat"):
            "deeplabv3_r50_ddcat",
        ("thesis_table5_2_minimal_norm_ddcat", "+experiment/thesis_table5_2_rows=cityscapes_deeplabv3_r50_ddcat"):
            "deeplabv3_r50_ddcat",
    }
    for (experiment, row), model in rows.items():
        extra = ["+experiment/table_columns=sea"] if experiment == "table1_sea_vs_baselines" else []
        if experiment.startswith("thesis"):
            extra = ["+experiment/table_columns=alma_prox", "+experiment/thesis_scenarios=untargeted"]
        cfg = compose_config("evaluate", [f"experiment={experiment}", row, *extra])
        assert cfg.model.name == model, row
        assert cfg.model.checkpoint_format == ("semseg_pspnet" if model.startswith("pspnet") else "semseg_deeplabv3")
        assert cfg.model.checkpoint.endswith(".pth")
