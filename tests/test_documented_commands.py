"""Every shell command of README.md and docs/*.md (fenced ``bash`` blocks) runs: at tiny scale (budget overrides
appended), or, where it needs real datasets, checkpoints, GPUs or a cluster, as a composition check
(``--cfg job``: the config composes and validates, nothing runs). The commands of one file run in order in one
fresh directory (a merge finds the shards the command before it wrote)."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_HERE = ("dataset=pascal_voc", "dataset=ade20k", "dataset=cityscapes", "/data/", "/ckpt/", "=...",
            "hydra/launcher=slurm", "experiment=cals_voc", "thesis_table6_2", "experiment=train_paper", "experiment=table1_sea_vs_baselines",
            "/path/to/")
"""Marks of a command that needs real data, checkpoints, a GPU, a cluster or another project's checkout: composition
only (not run where there is nothing to compose)."""
SKIPPED = ("bash scripts/test.sh", ". .venv/bin/activate", "-m pytest", "experiment=...", "multirun/ade_sea",
           "--layout table1")
"""The test suite itself, shell set-up, and illustrations with an elided experiment name."""
TINY_EVALUATE = ["logger=none", "max_images=2", "batch_size=2", "dataset.synthetic.num_val=2"]
TINY_TRAIN = ["logger=none", "schedule.epochs=1", "dataset.synthetic.num_train=16", "dataset.synthetic.num_val=4",
              "batch_size=8", "max_steps_per_epoch=1", "robust_eval.iterations=0"]


def commands(document: Path) -> list[str]:
    found = []
    for block in re.findall(r"```bash\n(.*?)```", document.read_text(), flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(re.split(r"\s+#\s", line)[0].strip())
    return found


def _budget(words: list[str]) -> list[str]:
    """Tiny-budget overrides for the attack the command selects (only the options it has)."""
    from tests.conftest import compose_config

    from robust_seg.run.cli import attack_options_as_written

    overrides = attack_options_as_written([w for w in words if "=" in w and not w.startswith(("-", "hydra"))])
    first = [w.split(",")[0] if "=" in w and "," in w.split("=", 1)[1] and "[" not in w else w for w in overrides]
    options = compose_config("evaluate", first).attack.options
    budget = {"iterations": 2, "queries": 5, "steps": 2}
    # a multirun composes its base config (without the sweep's choices) first: ++ adds or overrides there
    prefix = "++" if "-m" in words[words.index("robust_seg.evaluate") + 1:] else ""
    return [f"{prefix}attack.options.{key}={value}" for key, value in budget.items() if key in options]


def prepared(command: str) -> tuple[list[str], bool] | None:
    """(argv, composition_only) for a documented command, or None when it is not run here."""
    if any(mark in command for mark in SKIPPED):
        return None
    words = shlex.split(command)
    if words[0].startswith(".venv/bin/python") or words[0] == "python":
        words[0] = sys.executable
    words = [str(ROOT / w) if w.startswith("scripts/") else w for w in words]  # the project's scripts, from anywhere
    composition_only = any(mark in command for mark in NOT_HERE) or "[--" in command
    if words[:2] == ["bash", str(ROOT / "scripts/main.sh")]:
        return words + TINY_EVALUATE[1:] + ["attack.options.iterations=2"], False
    if words[0] == "torchrun":
        words = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
        words = [re.sub(r"--nproc_per_node=\d+", "--nproc_per_node=2", w) for w in words]
    module = next((w for w in words if w.startswith("robust_seg.")), None)
    if module in ("robust_seg.evaluate", "robust_seg.train"):
        if composition_only:  # the same overrides, composed and printed by the entry point itself
            overrides = [w for w in words[words.index(module) + 1:] if w != "-m"]
            return [sys.executable, "-m", module, *overrides, "--cfg", "job"], True
        if module == "robust_seg.evaluate":
            return words + TINY_EVALUATE + _budget(words), False
        return words + TINY_TRAIN, False
    if composition_only:
        return None
    if "reproduce.sh" in command:  # the embedded scale runs; the full scale needs the datasets
        return (["bash", *words], False) if "+scale=embedded" in command else None
    if "benchmark_attacks.py" in command:
        return words + ["--iterations", "2", "--rounds", "1", "--batch", "4"], False
    if "compare_calibration.py" in command:
        return words + ["--epochs", "1", "--train-images", "16", "--val-images", "4", "--methods", "cals_alm",
                        "--attack-eps", ""], False
    return words, False


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_every_documented_command_runs(document, tmp_path):
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               ROBUST_SEG_CACHE=str(tmp_path / "cache"), ROBUST_SEG_RESULTS=str(tmp_path / "outputs"))
    for command in commands(document):
        plan = prepared(command)
        if plan is None:
            continue
        argv, composition_only = plan
        completed = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert completed.returncode == 0, (f"{document.name}: {command}\n{' '.join(argv)}\n"
                                           f"{completed.stdout[-1500:]}\n{completed.stderr[-3000:]}")
