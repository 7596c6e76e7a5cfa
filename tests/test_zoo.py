"""The zoo of published models (configs/model/zoo/): listing, composition, the SEA-paper checkpoint format, the whole
download -> convert -> evaluate path against a local HTTP server, refused files, and the ranked leaderboard."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

import pytest
import torch

from robust_seg.reporting import published
from robust_seg.models.zoo import zoo_models
from robust_seg.names import ZOO_DIR
from robust_seg.reporting.published import paper_numbers
from tests.conftest import assert_markdown_tables, call, compose_config
from tests.test_run_integrity import ASSET, CLEAN_ASSET

RUN = ["logger=none", "dataset.synthetic.num_val=2", "max_images=2", "batch_size=2", "attack=sea",
       "++attack.options.iterations=2", "attack.eps=[0,4/255,8/255]", "diagnostics=false"]
TINY_ENTRY = """\
defaults:
  - /model/small_upernet_convnext@_here_
  - _self_

name: {name}
checkpoint: null
checkpoint_format: sea_upernet
zoo:
  dataset: synthetic
  threat_model: Linf
  training: test entry
  source: tests/test_zoo.py
  paper: sea_table3/voc_upernet_convnext_t_pirat_5step_50ep
  readme: {{"0": 75.2, "4/255": 64.9, "8/255": 34.6}}
  protocol: sea
"""


# ----------------------------------------------------------------------------------------------- official format
def official_sea_upernet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This project's segmentor keys -> the key names of the SEA paper's released UPerNet checkpoints, written
    from ``semseg/models/uperforseg.py`` and ``backbones/convnext_orig.py`` of nmndeep/Robust-Segmentation
    (ConvNeXt: ``downsample_layers``, ``stages.{i}.{j}.{dwconv,norm,pwconv1,pwconv2,gamma}``; heads:
    ``UperNetConvModule`` = ``conv`` + ``batch_norm``, ``classifier``)."""
    rules = [(r"^segmentor\.backbone\.stem\.stem\.", "backbone.downsample_layers.0.stem."),
             (r"^segmentor\.backbone\.stages\.(\d)\.downsample\.", r"backbone.downsample_layers.\1."),
             (r"^segmentor\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.", r"backbone.stages.\1.\2.dwconv."),
             (r"^segmentor\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc(\d)\.", r"backbone.stages.\1.\2.pwconv\3."),
             (r"^segmentor\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.", r"backbone.stages.\1.\2."),
             (r"^segmentor\.(decode_head|auxiliary_head)\.conv_seg\.", r"\1.classifier."),
             (r"^segmentor\.(decode_head|auxiliary_head)\.(.*)\.bn\.", r"\1.\2.batch_norm."),
             (r"^segmentor\.", "")]
    official = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            if re.search(pattern, key):
                official[re.sub(pattern, replacement, key)] = value
                break
    return official


def official_sea_segmenter(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This project's Segmenter keys -> those of the SEA paper's released Segmenter (Strudel et al.'s layout, written
    from ``backbones/vit_encoder.py`` and ``heads/segmenter_decoder.py`` of nmndeep/Robust-Segmentation: ``encoder.
    blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``decoder.proj_patch`` used as ``x @ P``), with
    the ViT's unused classification head ``encoder.head``."""
    layer = [("ln1.", "norm1."), ("ln2.", "norm2."), ("attn.attn.in_proj_weight", "attn.qkv.weight"),
             ("attn.attn.in_proj_bias", "attn.qkv.bias"), ("attn.attn.out_proj.", "attn.proj."),
             ("ffn.layers.0.0.", "mlp.fc1."), ("ffn.layers.1.", "mlp.fc2.")]
    official = {}
    for key, value in state.items():
        key = key[len("segmentor."):]
        for ours, theirs in (("backbone.layers.", "encoder.blocks."), ("decode_head.layers.", "decoder.blocks.")):
            if key.startswith(ours):
                index, rest = key[len(ours):].split(".", 1)
                rest = next(theirs_part + rest[len(ours_part):] for ours_part, theirs_part in layer
                            if rest.startswith(ours_part))
                key = f"{theirs}{index}.{rest}"
        if key in ("decode_head.patch_proj.weight", "decode_head.classes_proj.weight"):
            key, value = {"decode_head.patch_proj.weight": "decoder.proj_patch",
                          "decode_head.classes_proj.weight": "decoder.proj_classes"}[key], value.t()
        for ours, theirs in (("backbone.patch_embed.projection.", "encoder.patch_embed.proj."),
                             ("backbone.ln1.", "encoder.norm."), ("backbone.", "encoder."),
                             ("decode_head.dec_proj.", "decoder.proj_dec."), ("decode_head.", "decoder.")):
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        official[key] = value
    width = official["encoder.norm.weight"].shape[0]
    official.update({"encoder.head.weight": torch.zeros(1000, width), "encoder.head.bias": torch.zeros(1000)})
    return official


def official_layout(checkpoint_format: str, state: dict[str, torch.Tensor]) -> dict:
    """``state`` written as a checkpoint of ``checkpoint_format`` is published."""
    if checkpoint_format == "sea_upernet":
        return official_sea_upernet(state)
    if checkpoint_format == "sea_segmenter":
        return official_sea_segmenter(state)
    return {"meta": {"CLASSES": None}, "state_dict": {k[len("segmentor."):]: v for k, v in state.items()}}  # MMSeg


def shipped_state(path: Path = ASSET) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


OFFICIAL_FORMATS = {
    # format: (model config of this project, writer of the official layout, official key names, an unrelated layout)
    "sea_upernet": ("small_upernet_convnext", official_sea_upernet, (
        "backbone.downsample_layers.0.stem.3.weight", "backbone.downsample_layers.2.0.bias",
        "backbone.stages.2.1.dwconv.weight", "backbone.stages.0.0.pwconv2.bias", "backbone.stages.3.0.gamma",
        "backbone.norm3.weight", "decode_head.psp_modules.3.1.batch_norm.running_var",
        "decode_head.fpn_bottleneck.conv.weight", "decode_head.lateral_convs.0.batch_norm.weight",
        "decode_head.classifier.bias", "auxiliary_head.convs.0.batch_norm.weight", "auxiliary_head.classifier.weight"),
        "not a SEA-paper UPerNet checkpoint"),
    "sea_segmenter": ("small_segmenter_vit", official_sea_segmenter, (
        "encoder.patch_embed.proj.weight", "encoder.cls_token", "encoder.pos_embed", "encoder.blocks.0.attn.qkv.weight",
        "encoder.blocks.0.attn.proj.bias", "encoder.blocks.0.mlp.fc2.weight", "encoder.blocks.0.norm1.weight",
        "encoder.norm.bias", "encoder.head.weight", "decoder.proj_dec.weight", "decoder.cls_emb",
        "decoder.blocks.0.norm2.bias", "decoder.proj_patch", "decoder.proj_classes", "decoder.decoder_norm.weight",
        "decoder.mask_norm.bias"), "not a SEA-paper Segmenter checkpoint"),
}


@pytest.mark.parametrize("checkpoint_format", sorted(OFFICIAL_FORMATS))
def test_sea_converters_map_the_official_names_back_exactly(checkpoint_format):
    from robust_seg.errors import CheckpointError
    from robust_seg.models import build_model
    from robust_seg.models.checkpoints import resolve_checkpoint_format, segmentation_state

    model, write, names, wrong_layout = OFFICIAL_FORMATS[checkpoint_format]
    cfg = compose_config("evaluate", [f"model={model}", "model.random_weights=true"])
    ours = build_model(cfg.model, cfg.dataset.num_classes).state_dict()
    official = write(ours)
    for name in names:
        assert name in official, name
    assert resolve_checkpoint_format(official, "auto", "x") == checkpoint_format
    converted = segmentation_state(official, checkpoint_format, "x")
    assert converted.keys() == ours.keys() and all(torch.equal(converted[k], ours[k]) for k in ours)
    extra = f"{names[0].split('.')[0]}.extra"
    with pytest.raises(CheckpointError, match=f"keys the converter does not know: {extra}"):
        segmentation_state({**official, extra: torch.zeros(1)}, checkpoint_format, "x")
    with pytest.raises(CheckpointError, match=wrong_layout):
        segmentation_state({k[len("segmentor."):]: v for k, v in ours.items()}, checkpoint_format, "x")


# ----------------------------------------------------------------------------------------------- the registry
def paper_of(model):
    return paper_numbers(model.paper_reference, model.readme)


def test_every_zoo_entry_is_listed_composes_for_its_dataset_and_cites_the_paper():
    from robust_seg.evaluation.config import check_evaluate_config
    from robust_seg.errors import ConfigError
    from robust_seg.models.checkpoints import CHECKPOINT_FORMATS

    models = zoo_models()
    assert sorted(m.name for m in models) == sorted(p.stem for p in ZOO_DIR.glob("*.yaml")) and len(models) >= 9
    code, out, _ = call("zoo")
    assert code == 0 and all(f"| {m.name} | {m.dataset} |" in out for m in models)
    assert assert_markdown_tables(out) == 1
    for model in models:
        cfg = compose_config("evaluate", [f"model=zoo/{model.name}", f"dataset={model.dataset}"])
        check_evaluate_config(cfg)
        assert cfg.model.name == model.name and cfg.model.checkpoint.startswith("https://")
        assert cfg.model.checkpoint_format in CHECKPOINT_FORMATS and paper_numbers(model.paper_reference, model.readme) is not None
        other = "ade20k" if model.dataset != "ade20k" else "pascal_voc"
        with pytest.raises(ConfigError, match=f"trained on {model.dataset}, not {other}: add dataset={model.dataset}"):
            check_evaluate_config(compose_config("evaluate", [f"model=zoo/{model.name}", f"dataset={other}"]))
    by_name = {m.name: m for m in models}
    assert paper_of(by_name["pirat-upernet-convnext-t-voc"])["radii"]["8/255"] == {"acc": 71.2, "miou": 37.0}
    assert published.TABLE3["voc_upernet_convnext_t_pirat_5step_50ep"][5] == 37.0  # one source: published.py
    assert paper_of(by_name["mmseg-segformer-mit-b3-cityscapes"])["minimal_norm"]["untargeted"]["alma_prox"] == [0.33, 0.33]
    assert "mIoU 75.2 clean, 37.0 at 8/255" in out
    code, _, err = call("zoo", "--dataset", "kitti")
    assert code == 2 and "choose from: ade20k, cityscapes, pascal_voc" in err


# ----------------------------------------------------------------------------------------------- served checkpoints
@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _tiny_zoo(tmp_path: Path, *names: str) -> str:
    """A config search path holding zoo entries of the shipped architecture (the real ones need real data)."""
    for name in names:
        entry = tmp_path / "zoo_configs" / "model" / "zoo" / f"{name}.yaml"
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text(TINY_ENTRY.format(name=name))
    return f"hydra.searchpath=[file://{tmp_path / 'zoo_configs'}]"


def test_a_served_official_checkpoint_evaluates_like_the_original_with_paper_columns(tmp_path, server, monkeypatch):
    served, base = server
    monkeypatch.setenv("ROBUST_SEG_CACHE", str(tmp_path / "cache"))
    torch.save(official_sea_upernet(shipped_state()), served / "official.pth")
    data = (served / "official.pth").read_bytes()
    (served / "truncated.pth").write_bytes(data[: len(data) // 3])
    search = _tiny_zoo(tmp_path, "tiny-pirat")
    with contextlib.chdir(tmp_path):
        code, _, err = call("evaluate", *RUN, search, "model=zoo/tiny-pirat", f"model.checkpoint={base}/official.pth",
                            "run_name=zoo")
        assert code == 0, err
        code, _, err = call("evaluate", *RUN, "run_name=direct")  # the shipped model itself
        assert code == 0, err
        zoo = json.loads(Path("outputs/evaluate/zoo/results.json").read_text())
        direct = json.loads(Path("outputs/evaluate/direct/results.json").read_text())
        assert zoo["radii"] == direct["radii"]  # the converted official checkpoint is the same model
        assert zoo["provenance"]["model"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert zoo["paper"]["radii"]["8/255"] == {"acc": 71.2, "miou": 37.0}
        report = Path("outputs/evaluate/zoo/results.md").read_text()
        assert ("## Paper vs measured (SEA paper Table 3 (voc_upernet_convnext_t_pirat_5step_50ep); official README "
                "(nmndeep/Robust-Segmentation))") in report
        assert zoo["paper"]["also"][0]["radii"]["8/255"] == {"acc": None, "miou": 34.6}
        measured = zoo["radii"]["8/255"]["worst_case"]
        assert "| eps | paper ACC | paper mIoU | README mIoU | measured ACC | measured mIoU |" in report
        assert f"| 8/255 | 71.2 | 37.0 | 34.6 | {measured['acc']:.1f} | {measured['miou']:.1f} |" in report
        assert zoo["provenance"]["dataset"]["protocol"]["name"] == "sea"  # the entry's protocol
        assert "paper" not in direct and "Paper vs measured" not in Path("outputs/evaluate/direct/results.md").read_text()

        for bad, fragment in ((["model.checkpoint_sha256=" + "0" * 64], "sha256"),
                              ([f"model.checkpoint={base}/truncated.pth"], "cannot read checkpoint")):
            overrides = [f"model.checkpoint={base}/official.pth", *bad]
            code, _, err = call("evaluate", *RUN, search, "model=zoo/tiny-pirat", *overrides, "run_name=bad")
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and fragment in lines[0] and lines[0].startswith("error:"), err
            assert not Path("outputs/evaluate/bad").exists()


def test_leaderboard_ranks_measured_models_beside_the_paper_and_lists_unrun_zoo_models(tmp_path, server, monkeypatch):
    served, base = server
    monkeypatch.setenv("ROBUST_SEG_CACHE", str(tmp_path / "cache"))
    torch.save(official_sea_upernet(shipped_state(ASSET)), served / "robust.pth")
    torch.save(official_sea_upernet(shipped_state(CLEAN_ASSET)), served / "clean.pth")
    search = _tiny_zoo(tmp_path, "tiny-robust", "tiny-clean")
    sweep = tmp_path / "multirun"
    with contextlib.chdir(tmp_path):
        for name, file in (("tiny-robust", "robust"), ("tiny-clean", "clean")):
            code, _, err = call("evaluate", *RUN, search, "experiment=zoo_pascal_voc", "dataset=synthetic",
                                f"model=zoo/{name}", f"model.checkpoint={base}/{file}.pth",
                                f"hydra.run.dir={sweep}/{name}")
            assert code == 0, err
    from robust_seg.reporting.leaderboard import make_leaderboard

    table = make_leaderboard("zoo_pascal_voc", [sweep])
    rows = [line for line in table.splitlines() if line.startswith("| ") and "rank" not in line]
    assert rows[0].startswith("| 1 | tiny-robust | Linf |") and rows[1].startswith("| 2 | tiny-clean | Linf |")
    assert "(37.0, " in rows[0]  # the paper's 8/255 mIoU beside the measured one
    unrun = [m.name for m in zoo_models("pascal_voc")]
    assert all(any(row.startswith(f"| – | {name} |") for row in rows[2:]) for name in unrun)
    assert len(rows) == 2 + len(unrun) and "Gaps:" in table
    robust = json.loads((sweep / "tiny-robust" / "results.json").read_text())["radii"]["8/255"]["worst_case"]
    clean = json.loads((sweep / "tiny-clean" / "results.json").read_text())["radii"]["8/255"]["worst_case"]
    assert robust["miou"] > clean["miou"]  # the ranking follows the measured numbers


@pytest.mark.slow
@pytest.mark.parametrize("model", [m.name for m in zoo_models()])
def test_every_zoo_entry_loads_a_served_checkpoint_of_its_format(model, tmp_path, server, monkeypatch):
    """Each entry's real architecture loads a checkpoint in its published format (random weights, written with
    the entry's key layout) through the download cache, and predicts its dataset's classes."""
    from robust_seg.api import load_model
    from robust_seg.models import build_model

    served, base = server
    monkeypatch.setenv("ROBUST_SEG_CACHE", str(tmp_path / "cache"))
    entry = {m.name: m for m in zoo_models()}[model]
    cfg = compose_config("evaluate", [f"model=zoo/{model}", f"dataset={entry.dataset}", "model.checkpoint=null"])
    state = build_model(cfg.model, cfg.dataset.num_classes).state_dict()
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) if v.is_floating_point() and "running_var" not in k else v
             for k, v in state.items()}
    torch.save(official_layout(entry.checkpoint_format, state), served / "model.pth")
    loaded = load_model(f"zoo/{model}", checkpoint=f"{base}/model.pth")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        logits = loaded(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, cfg.dataset.num_classes, 64, 64)
