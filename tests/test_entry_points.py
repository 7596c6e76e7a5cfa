"""The entry points end to end: clean training learns; a multirun grid runs every combination."""
import json

import yaml

from tests.conftest import TINY, run_entry


def test_clean_training_reaches_miou_well_above_chance(tmp_path):
    completed = run_entry(
        "train", "logger=none", "dataset.synthetic.num_train=512", "dataset.synthetic.num_val=32",
        "scheme=clean", "schedule.epochs=4", "schedule.warmup_epochs=0.25", "batch_size=8",
        "optimizer.lr=2e-3", "robust_eval.iterations=0", "eval_every=4", "run_name=clean", cwd=tmp_path, check=True)
    results = json.loads((tmp_path / "outputs/train/clean/train_results.json").read_text())
    assert [h["epoch"] for h in results["history"]] == [1, 2, 3, 4]
    final = results["final"]
    # chance on 6 classes: predicting one class everywhere gives mIoU <= 1/6 of that class's IoU (< 17%)
    assert final["val_miou"] > 40.0, completed.stdout[-2000:]
    assert final["val_acc"] > 60.0


def test_multirun_grid_runs_every_combination(tmp_path):
    run_entry("evaluate", "-m", *TINY, "max_images=4", "batch_size=4", "attack=apgd", "attack.options.iterations=2",
              "attack.eps=[0,4/255]", "attack.options.loss=ce,js", "run_name=grid", cwd=tmp_path, check=True)
    jobs = sorted((tmp_path / "outputs/evaluate/multirun/grid").glob("[0-9]*"))
    assert len(jobs) == 2
    losses = set()
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        assert set(results["radii"]) == {"0", "4/255"}
        losses.add(yaml.safe_load((job / ".hydra/config.yaml").read_text())["attack"]["options"]["loss"])
    assert losses == {"ce", "js"}
