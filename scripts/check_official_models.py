"""Check the zoo's SEA-paper entries against the official code: the same weights, the same logits, the same
clean numbers through the whole evaluation path.

    python scripts/check_official_models.py --official PATH/TO/Robust-Segmentation

PATH is a checkout of github.com/nmndeep/Robust-Segmentation. The script builds the official UPerNet + ConvNeXt-T,
UPerNet + ConvNeXt-S and Segmenter + ViT-S from that checkout's modules with random weights (BatchNorm statistics,
layer scales and LayerNorms drawn away from their initial values so that every part matters). It converts each
state dict with the entry's converter (``robust_seg.models.convert.sea_upernet`` / ``sea_segmenter``), loads it
into the model the zoo entry builds, and prints the largest logit difference on random images in [0, 1].
``timm`` (and ``einops`` when absent) are replaced by the few pieces the official modules import. The
Segmenter's forward is composed from the official encoder, decoder, ``padding`` and ``unpadding`` in the order of
the official ``SegMenter.forward`` and checked on sides that are not multiples of 16.

The evaluation path: fake validation sets in the real on-disk layouts (PASCAL-VOC images of 375x500, 500x333,
473x473 and 512x683 with object outlines; ADE20K images of the same sizes) are read by the official
``get_data`` (``tools/infer.py``, with the official dataset classes; torchvision's ``ToTensor`` replaced by the
same conversion) and scored by the official ``eval_performance`` (its ``"cuda"`` read as the CPU), and evaluated
by ``python -m robust_seg.evaluate model=zoo/<entry> dataset=<its dataset> attack=none`` with the same weights.
Clean ACC and mIoU must agree to 1e-3 points. As a control, the same evaluation under ``dataset.protocol=pad``
is printed beside them: it differs, so the agreement is the protocol's and not a coincidence. The classifier
biases are set to 0 so that random weights predict many classes, not one everywhere.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image
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
        loaded[name] = _load(checkout, name)
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
            if name.endswith(("classifier.bias", "mask_norm.bias")):  # else one class wins almost every pixel
                parameter.zero_()
    return model.eval()


def _load(checkout: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, checkout / (name.replace(".", "/") + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _OfficialSegmenter(nn.Module):
    """The official SegMenter.forward: ``padding`` to a multiple of 16, encoder without the class token, decoder,
    upsampling to the padded size, ``unpadding`` (``semseg/models/segmenter.py``, ``semseg/utils/segmenter_eval.py``)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, utilities: types.ModuleType):
        super().__init__()
        self.encoder, self.decoder, self.utilities = encoder, decoder, utilities

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = images.shape[2:]
        padded = self.utilities.padding(images, 16)
        masks = self.decoder(self.encoder(padded, pre_neck=True)[:, 1:], padded.shape[2:])
        masks = nn.functional.interpolate(masks, size=padded.shape[2:], mode="bilinear")
        return self.utilities.unpadding(masks, size)


VALIDATION_SIZES = ((375, 500), (500, 333), (473, 473), (512, 683))
"""(height, width) of the fake validation images: landscape, portrait, the VOC crop size, a large one."""


def _fake_validation_set(root: Path, dataset: str) -> Path:
    """Validation images in the real layout (smooth random colours, labels in blobs; VOC with 255 outlines).
    Returns the ``dataset.root`` of this project (the official code is given its parent)."""
    rng = np.random.default_rng(0)
    base = root / ("VOCdevkit/VOC2012" if dataset == "pascal_voc" else "ADEChallengeData2016")
    images, labels = (base / "JPEGImages", base / "SegmentationClass") if dataset == "pascal_voc" else \
        (base / "images/validation", base / "annotations/validation")
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    names = []
    for index, (height, width) in enumerate(VALIDATION_SIZES):
        name = f"2007_{index:06d}" if dataset == "pascal_voc" else f"ADE_val_{index:08d}"
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC).save(images / f"{name}.jpg")
        classes = 21 if dataset == "pascal_voc" else 151
        label = np.asarray(Image.fromarray(rng.integers(0, classes, size=(5, 7), dtype=np.uint8)).resize(
            (width, height), Image.Resampling.NEAREST)).copy()
        if dataset == "pascal_voc":
            edges = np.zeros_like(label, dtype=bool)
            edges[1:] |= label[1:] != label[:-1]
            edges[:, 1:] |= label[:, 1:] != label[:, :-1]
            label[edges] = 255
            picture = Image.fromarray(label, mode="P")
            picture.putpalette([0] * 768)
            picture.save(labels / f"{name}.png")
        else:
            Image.fromarray(label, mode="L").save(labels / f"{name}.png")
        names.append(name)
    if dataset == "pascal_voc":
        (base / "ImageSets/Segmentation").mkdir(parents=True)
        (base / "ImageSets/Segmentation/val.txt").write_text("\n".join(names) + "\n")
    return base


def _official_function(checkout: Path, name: str, namespace: dict):
    """One function of ``tools/infer.py``, defined from its source in ``namespace`` (the module's own imports need
    CUDA, torchvision and the attack code; these functions need none of them once ``cuda`` reads ``cpu``)."""
    source = (checkout / "tools" / "infer.py").read_text()  # the file needs Python 3.12 to parse whole
    start = source.index(f"\ndef {name}(") + 1
    end = min(i for i in (source.find(f"\n{word}", start + 1) for word in ("def ", "class ", "if __name__", "@"))
              if i != -1)
    exec(compile(source[start:end].replace('"cuda"', '"cpu"'), "infer.py", "exec"), namespace)
    return namespace[name]


def official_clean_metrics(checkout: Path, model: nn.Module, dataset: str, root: Path) -> tuple[float, float]:
    """(aAcc, mIoU) in % of the official ``get_data`` + ``eval_performance`` on the fake validation set."""
    package = types.ModuleType("semseg.datasets")
    package.__path__ = [str(checkout / "semseg" / "datasets")]
    sys.modules["semseg.datasets"] = package
    _load(checkout, "semseg.datasets.dataset_wrappers")
    classes = {"pascalvoc": _load(checkout, "semseg.datasets.pascal_voc").VOCSegmentation,
               "ade20k": _load(checkout, "semseg.datasets.ade").ADE20KSegmentation}

    def to_tensor():  # torchvision.transforms.ToTensor on an HWC uint8 array
        return lambda array: torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div(255)

    namespace = {"torch": torch, "torchvision": types.SimpleNamespace(transforms=types.SimpleNamespace(
        ToTensor=to_tensor)), "get_segmentation_dataset": lambda name, **kwargs: classes[name.lower()](**kwargs)}
    get_data = _official_function(checkout, "get_data", namespace)
    eval_performance = _official_function(checkout, "eval_performance", namespace)
    name, num_classes = ("pascalvoc", 21) if dataset == "pascal_voc" else ("ADE20K", 151)
    loader = torch.utils.data.DataLoader(get_data({"ROOT": str(root)}, {"NAME": name}), batch_size=2, shuffle=False)
    stats, _ = eval_performance(model, loader, n_cls=num_classes, ignore_index=-1)
    return 100 * stats["aAcc"], 100 * stats["mIoU"]


def project_clean_metrics(entry: str, dataset: str, root: Path, checkpoint: Path, work: Path,
                          *overrides: str) -> tuple[float, float]:
    """(ACC, mIoU) in % of ``python -m robust_seg.evaluate model=zoo/<entry> dataset=<dataset> attack=none``."""
    run = work / ("run" + "_".join(overrides).replace("=", "-").replace(".", "-"))
    command = [sys.executable, "-m", "robust_seg.evaluate", f"model=zoo/{entry}", f"dataset={dataset}",
               f"dataset.root={root}", f"model.checkpoint={checkpoint}", "attack=none", "logger=none",
               "figure_images=0", f"hydra.run.dir={run}", *overrides]
    completed = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    clean = json.loads((run / "results.json").read_text())["radii"]["0"]["worst_case"]
    return clean["acc"], clean["miou"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of nmndeep/Robust-Segmentation")
    parser.add_argument("--skip-data", action="store_true", help="logits only, without the evaluation path")
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
    utilities = _load(args.official, "semseg.utils.segmenter_eval")
    cases = [
        ("pirat-upernet-convnext-t-voc", "pascal_voc", upernet("ConvNext-T_CVST", n_cls=21, pretrained=None),
         (96, 128)),
        ("pirat-upernet-convnext-s-voc", "pascal_voc", upernet("ConvNext-S_CVST", n_cls=21, pretrained=None),
         (96, 128)),
        ("pirat-upernet-convnext-t-ade20k", "ade20k", upernet("ConvNext-T_CVST", n_cls=151, pretrained=None),
         (96, 128)),
        ("pirat-upernet-convnext-s-ade20k", "ade20k", upernet("ConvNext-S_CVST", n_cls=151, pretrained=None),
         (96, 128)),
        ("pirat-segmenter-vit-s-ade20k", "ade20k", _OfficialSegmenter(  # utils.load_config_segmenter's settings
            vit.VisionTransformer(image_size=(512, 512), patch_size=16, n_layers=12, d_model=384, d_ff=1536,
                                  n_heads=6, n_cls=1000, dropout=0.0, drop_path_rate=0.1),
            decoder.MaskTransformer(n_cls=151, patch_size=16, d_encoder=384, n_layers=2, n_heads=6, d_model=384,
                                    d_ff=1536, drop_path_rate=0.0, dropout=0.1), utilities), (375, 500)),
    ]
    worst = worst_metric = 0.0
    rows = []
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
        if args.skip_data:
            continue
        with tempfile.TemporaryDirectory(prefix="official-path-") as temporary:
            work = Path(temporary)
            root = _fake_validation_set(work / "data", dataset)
            torch.save(official.state_dict(), work / "official.pth")
            with torch.no_grad():
                theirs = official_clean_metrics(args.official, official, dataset, work / "data")
            mine = project_clean_metrics(entry, dataset, root, work / "official.pth", work)
            control = project_clean_metrics(entry, dataset, root, work / "official.pth", work, "dataset.protocol=pad")
        gap = max(abs(a - b) for a, b in zip(theirs, mine))
        worst_metric = max(worst_metric, gap)
        rows.append(f"| {entry} | {theirs[0]:.4f} | {mine[0]:.4f} | {theirs[1]:.4f} | {mine[1]:.4f} | {gap:.1e} | "
                    f"{control[0]:.2f} / {control[1]:.2f} |")
        print(f"{entry}: official get_data + eval_performance aAcc {theirs[0]:.4f} mIoU {theirs[1]:.4f}; "
              f"robust_seg.evaluate ACC {mine[0]:.4f} mIoU {mine[1]:.4f}; largest difference {gap:.1e} points "
              f"(control, dataset.protocol=pad: ACC {control[0]:.2f} mIoU {control[1]:.2f})")
    if rows:
        print("\n| entry | official aAcc | ACC | official mIoU | mIoU | largest difference | pad protocol ACC / mIoU |"
              "\n|---|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
    return 0 if worst < 1e-4 and worst_metric < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
