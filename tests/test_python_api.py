"""The Python API: the quick start's code blocks run as written; any model in (factory, MMSeg config file)."""
from __future__ import annotations

import contextlib
import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import ROOT, call


@pytest.mark.slow  # docs/ code, as every command of the README and docs/ (tests/test_documented_commands.py)
def test_quick_start_code_blocks_run_as_written(tmp_path, monkeypatch):
    """The API's behaviours themselves (own data, factories, MMSeg config files) are tested below, in the default
    suite."""
    text = (ROOT / "docs" / "python_api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # from any directory: nothing in the quick start is relative to the checkout
    import robust_seg.evaluate  # noqa: F401  (the entry point's module shadows rs.evaluate: it must still work)

    namespace: dict = {}
    for block in blocks:
        code = block.replace('run_dir="outputs/api/', f'run_dir="{tmp_path}/')
        exec(compile(textwrap.dedent(code), "docs/python_api.md", "exec"), namespace)
    assert namespace["results"]["radii"]["8/255"]["worst_case"]["images"] == 4
    assert (tmp_path / "quick_start" / "results.json").exists()
    own = json.loads((tmp_path / "own_data" / "results.json").read_text())
    assert own["dataset"].startswith("tensors (4 images") and own["provenance"]["dataset"]["fingerprint"]
    assert list(own["radii"]["0"]["worst_case"]["per_class_iou"]) == ["sky", "road", "car"]


def three_class_factory():
    torch.manual_seed(3)
    return TinySegmenter(classes=3)


class PairDataset(torch.utils.data.Dataset):
    """A user's own Dataset: (image, label) pairs."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def test_own_data_as_tensors_dataset_or_loader_gives_the_cli_numbers(tmp_path):
    """A 3-class toy model on 4 synthetic images: rs.evaluate with (a) tensors, (b) a Dataset, (c) a DataLoader
    equals the command line on the same images, radius by radius, with diagnostics."""
    import robust_seg as rs

    cli = ["model=custom", "model.target=tests.test_python_api.three_class_factory", "dataset.num_classes=3",
           "attack=apgd", "attack.options.iterations=3", "batch_size=2"]
    code, out, err = _evaluate(tmp_path, *cli)
    assert code == 0, err[-2000:]
    expected = json.loads((Path(out.strip().splitlines()[-1].split("run directory: ")[-1]) / "results.json").read_text())
    dataset = rs.load_data("synthetic", overrides=["dataset.num_classes=3", "dataset.synthetic.num_val=4"])
    images = torch.stack([dataset[i]["image"] for i in range(4)])
    labels = torch.stack([dataset[i]["label"] for i in range(4)])
    forms = {"tensors": (images, labels), "dataset": PairDataset(images, labels),
             "loader": torch.utils.data.DataLoader(PairDataset(images, labels), batch_size=2, shuffle=True)}
    for form, data in forms.items():
        got = rs.evaluate(three_class_factory(), data, attack="apgd", eps=[0, 8 / 255], iterations=3,
                          overrides=["batch_size=2"], run_dir=tmp_path / form)
        assert got["images"] == 4 and set(got["radii"]) == {"0", "8/255"}, form
        for radius in ("0", "8/255"):
            mine, cli_entry = got["radii"][radius]["worst_case"], expected["radii"][radius]["worst_case"]
            assert mine["per_image_acc"] == cli_entry["per_image_acc"], (form, radius)
            assert mine["miou"] == cli_entry["miou"] and mine["acc"] == cli_entry["acc"], (form, radius)
        assert got["diagnostics"]["checks"] == expected["diagnostics"]["checks"], form
        assert (tmp_path / form / "results.md").exists()


def test_own_data_errors_are_one_line(tmp_path):
    import robust_seg as rs
    from robust_seg.data.errors import DatasetError
    from robust_seg.errors import ConfigError

    images, labels = torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
    with pytest.raises(DatasetError, match="divide 8-bit images by 255"):
        rs.evaluate(TinySegmenter(3), (images * 255, labels), attack="apgd", eps=[0], run_dir=tmp_path / "a")
    with pytest.raises(DatasetError, match=r"must be tensors \(N, 3, H, W\) and \(N, H, W\)"):
        rs.evaluate(TinySegmenter(3), (images, labels[0]), attack="apgd", eps=[0], run_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="looks like 8/255"):
        rs.attacks.apgd(TinySegmenter(3), images, labels, eps=8, iterations=1)
    moved = labels.clone()
    moved[:, 0] = -1  # another ignore index is mapped to 255
    result = rs.evaluate(TinySegmenter(3), (images, moved), ignore_index=-1, attack="apgd", eps=[0],
                         run_dir=tmp_path / "c")
    assert result["radii"]["0"]["worst_case"]["images"] == 2


class TinySegmenter(nn.Module):
    def __init__(self, classes: int = 6, square: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 3, padding=1)
        self.square = square

    def forward(self, images):
        logits = self.conv(images)
        return logits if self.square else logits[:, :, :-1]


def tiny_factory():
    torch.manual_seed(0)
    return TinySegmenter()


def wrong_classes_factory():
    return TinySegmenter(classes=21)


def wrong_shape_factory():
    return TinySegmenter(square=False)


BASE = ["logger=none", "dataset.synthetic.num_val=4", "max_images=4", "batch_size=4", "attack.eps=[0,8/255]"]


def _evaluate(tmp_path, *args):
    with contextlib.chdir(tmp_path):
        return call("evaluate", *BASE, *args)


@pytest.mark.parametrize("attack", [["attack=sea", "attack.options.iterations=3"],
                                    ["attack=alma_prox", "attack.options.iterations=5"]])
def test_a_custom_factory_evaluates_end_to_end(tmp_path, attack):
    code, out, err = _evaluate(tmp_path, "model=custom", "model.target=tests.test_python_api.tiny_factory", *attack)
    assert code == 0, err[-2000:]
    run = Path(out.strip().splitlines()[-1].split("run directory: ")[-1])
    results = json.loads((run / "results.json").read_text())
    assert results["provenance"]["model"]["target"] == "tests.test_python_api.tiny_factory"


MMSEG_CONFIG = """
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(type='ResNetV1c', depth=18, num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 1, 1),
                  strides=(1, 2, 2, 2), norm_cfg=norm_cfg, style='pytorch'),
    decode_head=dict(type='FCNHead', in_channels=512, in_index=3, channels=16, num_convs=1, concat_input=False,
                     num_classes=19, norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
"""


@pytest.mark.parametrize("attack", [["attack=sea", "attack.options.iterations=2"],
                                    ["attack=alma_prox", "attack.options.iterations=3"]])
def test_an_mmseg_config_file_evaluates_end_to_end(tmp_path, attack):
    from robust_seg.models import build_model
    from robust_seg.models.config import ModelConfig

    (tmp_path / "tiny_fcn.py").write_text(MMSEG_CONFIG)
    model = build_model(ModelConfig(name="mmseg_config", config=str(tmp_path / "tiny_fcn.py")), 6)
    torch.save(model.state_dict(), tmp_path / "tiny_fcn.pt")
    assert model.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])  # from its data_preprocessor
    code, _, err = _evaluate(tmp_path, "model=mmseg_config", f"model.config={tmp_path / 'tiny_fcn.py'}",
                             f"model.checkpoint={tmp_path / 'tiny_fcn.pt'}", *attack)
    assert code == 0, err[-2000:]


@pytest.mark.parametrize("factory, fragment", [
    ("tests.test_python_api.wrong_classes_factory", "predicts 21 classes but the dataset has 6"),
    ("tests.test_python_api.wrong_shape_factory", "returns (2, 6, 63, 64)"),
    ("tests.test_python_api.no_such_factory", "cannot import it"),
])
def test_a_model_that_does_not_fit_is_one_line(tmp_path, factory, fragment):
    code, out, err = _evaluate(tmp_path, "model=custom", f"model.target={factory}", "attack=none")
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and fragment in lines[-1], lines[-1:]


def test_custom_without_target_is_one_line(tmp_path):
    code, _, err = _evaluate(tmp_path, "model=custom", "attack=none")
    assert code == 2 and "model=custom needs model.target=" in err.strip().splitlines()[-1]
