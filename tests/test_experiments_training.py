"""Every training row of the SEA paper's Tables 3 and 4 composes from experiment=train_paper and its three groups
(setting, init, epochs) plus the PGD steps, with the Table 5 values, is named as the table rows expect, and
instantiates (model, optimiser, schedule); `--cfg job` prints those values."""
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, compose_config

# (dataset, model, scheme, steps, epochs): the union of the training rows of Tables 3 and 4.
ROWS = [
    ("voc", "pspnet_r50", "pirat", 5, 50),
    ("voc", "upernet_convnext_t", "at", 5, 50), ("voc", "upernet_convnext_t", "pirat", 5, 50),
    ("voc", "upernet_convnext_t", "at", 2, 50), ("voc", "upernet_convnext_t", "pirat", 2, 50),
    ("voc", "upernet_convnext_t", "at", 2, 300), ("voc", "upernet_convnext_t", "at", 5, 300),
    ("voc", "upernet_convnext_s", "at", 5, 50), ("voc", "upernet_convnext_s", "pirat", 5, 50),
    ("ade", "upernet_convnext_t", "at", 5, 128), ("ade", "upernet_convnext_t", "pirat", 5, 128),
    ("ade", "upernet_convnext_t", "at", 2, 128), ("ade", "upernet_convnext_t", "pirat", 2, 128),
    ("ade", "upernet_convnext_t", "pirat", 5, 32),
    ("ade", "segmenter_vit_s", "at", 5, 128), ("ade", "segmenter_vit_s", "pirat", 5, 128),
    ("ade", "segmenter_vit_s", "pirat", 5, 32),
]
NAMES = [f"train_{d}_{m}_{s}_{k}step_{e}ep" for d, m, s, k, e in ROWS]


def overrides(dataset: str, model: str, scheme: str, steps: int, epochs: int) -> list[str]:
    """The command-line overrides that train one row."""
    return ["experiment=train_paper", f"experiment/train_setting={dataset}_{model}", f"experiment/train_init={scheme}",
            f"experiment/train_epochs={epochs}ep", f"scheme.adversarial.steps={steps}"]

# Table 5: (optimizer, lr, weight decay, momentum/betas, power, decoder lr ratio, aux weight, base, crop).
TABLE5 = {
    ("voc", "pspnet"): ("sgd", 5e-4, 0.0, 0.9, 0.9, 10, 0.4, 512, 473),
    ("voc", "upernet"): ("adamw", 1e-3, 1e-2, [0.9, 0.999], 1.0, 1, 0.4, 512, 473),
    ("ade", "upernet"): ("adamw", 1e-3, 1e-2, [0.9, 0.999], 1.0, 1, 0.4, 520, 512),
    ("ade", "segmenter"): ("sgd", 2e-3, 1e-2, 0.9, 0.9, 1, 0.0, 520, 512),
}
WARMUP = {50: 5, 300: 30, 32: 5, 128: 20}  # Table 5: warmup 5/30 for 50/300 epochs, 5/20 for 32/128


def test_every_row_composes_from_the_groups_and_nothing_else_is_shipped():
    experiments = ROOT / "configs/experiment"
    assert {p.stem for p in experiments.glob("train_*.yaml")} == {"train_paper"}
    assert {p.stem for p in (experiments / "train_setting").glob("*.yaml")} == {f"{d}_{m}" for d, m, *_ in ROWS}
    assert {p.stem for p in (experiments / "train_epochs").glob("*.yaml")} == {f"{e}ep" for *_, e in ROWS}


@pytest.mark.parametrize("row", ROWS[:2] + ROWS[-1:], ids=NAMES[:2] + NAMES[-1:])
def test_the_run_is_named_after_the_row_and_exports_where_the_table_reads(row, tmp_path):
    import yaml

    completed = subprocess.run([sys.executable, "-m", "robust_seg.train", *overrides(*row), "--cfg", "job", "--resolve"],
                               cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    name = f"train_{row[0]}_{row[1]}_{row[2]}_{row[3]}step_{row[4]}ep"
    assert f"run_name: {name}" in completed.stdout
    assert f"export_path: outputs/train/{name}/model.pt" in completed.stdout
    table_row = ROOT / "configs/experiment/table_rows" / f"{name[len('train_'):]}.yaml"
    assert yaml.safe_load(table_row.read_text())["model"]["checkpoint"].endswith(f"/train/{name}/model.pt")


@pytest.mark.parametrize("row", ROWS, ids=NAMES)
def test_row_composes_with_table5_values(row):
    dataset, model, scheme, steps, epochs = row
    cfg = compose_config("train", overrides(*row))
    optimizer, lr, decay, momentum, power, ratio, aux, base, crop = TABLE5[(dataset, model.split("_")[0])]
    assert cfg.dataset.name == {"voc": "pascal_voc", "ade": "ade20k"}[dataset]
    assert cfg.dataset.num_classes == {"voc": 21, "ade": 151}[dataset]
    assert (cfg.dataset.base_size, cfg.dataset.crop_size) == (base, crop)
    assert cfg.dataset.flip and cfg.dataset.gaussian_blur
    # the official code's augmentation and validation protocol (robust_seg/data/transforms.py, protocols.py)
    assert (cfg.dataset.augmentation, cfg.dataset.train_label_pad, cfg.dataset.protocol) == ("sea", 0, "sea")
    assert cfg.model.name == model
    assert cfg.model.backbone_init == {"at": "clean", "pirat": "robust"}[scheme]
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == (optimizer, lr, decay)
    assert (list(cfg.optimizer.betas) if optimizer == "adamw" else cfg.optimizer.momentum) == momentum
    assert cfg.optimizer.decoder_lr_ratio == ratio and cfg.auxiliary_weight == aux
    assert (cfg.schedule.epochs, cfg.schedule.warmup_epochs, cfg.schedule.power) == (epochs, WARMUP[epochs], power)
    assert cfg.batch_size == 16 * 8 and cfg.micro_batch_size == 16
    adversarial = cfg.scheme.adversarial
    assert cfg.scheme.name == "at" and cfg.scheme.loss.name == "ce"
    assert (adversarial.eps, adversarial.step_size, adversarial.steps) == ("4/255", 0.01, steps)
    assert adversarial.loss == "ce" and not adversarial.random_start


@lru_cache(maxsize=None)
def _built(model: str, dataset: str):
    from robust_seg.models import build_model

    cfg = compose_config("train", [*overrides(dataset, model, "at", 5, 50 if dataset == "voc" else 128),
                                   "model.backbone_init=none"])
    return build_model(cfg.model, cfg.dataset.num_classes)


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=NAMES)
def test_row_instantiates_model_optimizer_and_schedule(row):
    """The paper-size models are built on CPU (random backbone: the Table 6 checkpoints are downloads)."""
    from robust_seg.training.optim import build_optimizer, build_scheduler

    dataset, model, scheme, steps, epochs = row
    cfg = compose_config("train", overrides(*row))
    network = _built(model, dataset)
    assert network.num_classes == network.segmentor.decode_head.num_classes == cfg.dataset.num_classes
    optimizer = build_optimizer(cfg.optimizer, network)
    encoder, decoder = optimizer.param_groups
    assert decoder["lr"] == pytest.approx(encoder["lr"] * cfg.optimizer.decoder_lr_ratio)
    assert encoder["lr"] == cfg.optimizer.lr and encoder["weight_decay"] == cfg.optimizer.weight_decay
    steps_per_epoch = 10
    scheduler = build_scheduler(cfg.schedule, optimizer, steps_per_epoch)
    warmup_steps = int(cfg.schedule.warmup_epochs * steps_per_epoch)
    for _ in range(warmup_steps):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(cfg.optimizer.lr)  # peak right after warmup
    assert all(torch.isfinite(p).all() for p in network.backbone().parameters())


def test_cfg_job_prints_table5_values(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "robust_seg.train", *overrides("voc", "pspnet_r50", "pirat", 5, 50), "--cfg", "job"],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=120)
    assert completed.returncode == 0, completed.stderr
    printed = completed.stdout
    for line in ["name: sgd", "lr: 0.0005", "weight_decay: 0.0", "decoder_lr_ratio: 10", "power: 0.9",
                 "epochs: 50", "warmup_epochs: 5", "batch_size: 128", "micro_batch_size: 16",
                 "crop_size: 473", "base_size: 512", "backbone_init: robust", "steps: 5", "step_size: 0.01",
                 "auxiliary_weight: 0.4"]:
        assert line in printed, line
    assert not Path(tmp_path / "outputs").exists()  # --cfg job runs nothing
