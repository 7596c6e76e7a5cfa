"""A short, fast ``--help`` for the entry points: groups, main options, examples; no torch or mmseg import.

``--hydra-help`` still shows Hydra's own help; ``--cfg job`` prints the composed config.
"""
from __future__ import annotations

import sys

from robust_seg.names import CONFIGS

OPTIONS = {
    "evaluate": [
        ("attack.eps=[0,4/255,8/255]", "radii as the papers write them (0 = clean)"),
        ("attack.options.iterations=N", "iterations per run (SEA: per loss); attack.options.queries=N for Square"),
        ("model.checkpoint=PATH|URL", "the weights to evaluate (model=embedded: the shipped model, the default)"),
        ("dataset.root=DIR", "where a real dataset lies (pascal_voc, ade20k, cityscapes)"),
        ("dataset.protocol=pad|sea|thesis", "evaluation transform and labels (default: the zoo entry's, else pad)"),
        ("max_images=N batch_size=N", "how many validation images, and how many at once"),
        ("calibration=true", "ECE / AECE / CWCE / NLL at every radius"),
        ("diagnostics=false", "switch off the attack-failure checks"),
        ("run_name=NAME resume=true", "name a run; continue a killed one"),
        ("shard=K num_shards=N", "evaluate one shard (merge: python -m robust_seg.merge DIRS)"),
        ("logger=none | logger.mode=online", "files only | W&B online (WANDB_API_KEY in the environment)"),
        ("runtime.device=cpu|cuda runtime.threads=N", "where to run"),
    ],
    "train": [
        ("scheme=clean|at|ce|ls|fl|ecp|mbls|cals_hr|cals_alm", "how inputs are made and which loss trains"),
        ("scheme.adversarial.steps=N", "PGD steps of adversarial training (scheme=at)"),
        ("model.backbone_init=robust model.backbone_checkpoints.robust=PATH", "PIR-AT: a robust backbone"),
        ("schedule.epochs=N optimizer.lr=X batch_size=N", "the budget"),
        ("max_steps_per_epoch=N", "cap the steps of an epoch (a short run: schedule.epochs=2 max_steps_per_epoch=20)"),
        ("export_path=PATH", "a second copy of the final weights (model.pt is always in the run directory)"),
        ("dataset.augmentation=sea|project", "the official code's augmentation (train_paper) or the project's"),
        ("run_name=NAME resume=true", "name a run; continue a killed one"),
        ("logger=none", "files only (no W&B)"),
    ],
}
EXAMPLES = {
    "evaluate": [
        "python -m robust_seg.evaluate experiment=embedded_default            # the main job",
        "python -m robust_seg.evaluate attack=apgd attack.options.loss=js 'attack.eps=[8/255]'",
        "python -m robust_seg.evaluate model=upernet_convnext_t dataset=pascal_voc dataset.root=DIR \\\n"
        "    model.checkpoint=CKPT attack=sea",
        "python -m robust_seg.evaluate -m attack=sea,segpgd model=embedded,embedded_clean",
        "python -m robust_seg.zoo; python -m robust_seg.evaluate model=zoo/NAME dataset=DATASET dataset.root=DIR",
        "python -m robust_seg.data.prepare --list    # datasets: check downloaded archives, lay them out",
    ],
    "train": [
        "python -m robust_seg.train scheme=at schedule.epochs=2",
        "python -m robust_seg.train experiment=train_paper experiment/train_setting=ade_segmenter_vit_s \\\n"
        "    experiment/train_init=at experiment/train_epochs=128ep dataset.root=DIR    # docs/training.md",
    ],
}


def groups() -> dict[str, list[str]]:
    found = {}
    for directory in sorted(p for p in CONFIGS.iterdir() if p.is_dir() and p.name != "hydra"):
        names = sorted(p.stem for p in directory.glob("*.yaml"))
        names += [f"{sub.name}/<name> ({len(list(sub.glob('*.yaml')))})" for sub in sorted(directory.iterdir())
                  if sub.is_dir() and sub.name == "zoo"]  # published models: python -m robust_seg.zoo
        if names:
            found[directory.name] = names
    return found


def short_help(entry: str) -> str:
    lines = [f"python -m robust_seg.{entry} [OVERRIDE ...]   (Hydra overrides; -m runs a grid)", "",
             "Config groups (GROUP=NAME):"]
    for group, names in groups().items():
        shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + f", ... ({len(names)} in all)"
        lines.append(f"  {group:11s} {shown}")
    lines += ["", "Main options:"]
    lines += [f"  {option:48s} {meaning}" for option, meaning in OPTIONS[entry]]
    lines += ["", "Examples:"] + [f"  {example}" for example in EXAMPLES[entry]]
    lines += ["", "More: README.md; --cfg job prints the composed config; --hydra-help shows Hydra's help."]
    return "\n".join(lines)


def print_help_if_asked(entry: str) -> None:
    """Print the short help and exit when the command line asks for it (before any heavy import)."""
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        print(short_help(entry))
        sys.exit(0)
