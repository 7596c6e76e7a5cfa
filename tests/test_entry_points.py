"""The entry points end to end: clean training learns; a multirun grid runs every combination. They run in this
process (``call``: the entry point's ``main()``, the code path of the console scripts)."""
import json
from pathlib import Path

import yaml

from tests.conftest import TINY, run_in_process


def test_clean_training_reaches_miou_well_above_chance(tmp_path):
    completed = run_in_process(
        "train", "logger=none", "dataset.synthetic.num_train=256", "dataset.synthetic.num_val=32",
        "scheme=clean", "schedule.epochs=3", "schedule.warmup_epochs=0.25", "batch_size=8",
        "optimizer.lr=4e-3", "robust_eval.iterations=0", "eval_every=3", "run_name=clean", cwd=tmp_path, check=True)
    results = json.loads((tmp_path / "outputs/train/clean/train_results.json").read_text())
    assert [h["epoch"] for h in results["history"]] == [1, 2, 3]
    final = results["final"]
    # chance on 6 classes: predicting one class everywhere gives mIoU <= 1/6 of that class's IoU (< 17%).
    # 96 steps: measured mIoU 39.9, ACC 74.4 (512 images x 4 epochs at lr 2e-3 reach 53.6, 80.4 in 2.7x the time)
    assert final["val_miou"] > 30.0, completed.stdout[-2000:]
    assert final["val_acc"] > 60.0


def test_multirun_grid_runs_every_combination(tmp_path):
    """Two attacks x two models with an attack option written the obvious way (no +/++), as the README's grid."""
    run_in_process("evaluate", "-m", *TINY, "max_images=2", "batch_size=2", "attack=apgd,segpgd",
              "model=embedded,embedded_clean", "attack.options.iterations=2", "attack.eps=[0,4/255]",
              "run_name=grid", cwd=tmp_path, check=True)
    jobs = sorted((tmp_path / "outputs/evaluate/multirun/grid").glob("[0-9]*"))
    assert len(jobs) == 4
    combinations, titles = set(), set()
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        assert set(results["radii"]) == {"0", "4/255"}
        config = yaml.safe_load((job / ".hydra/config.yaml").read_text())
        assert config["attack"]["options"]["iterations"] == 2
        combinations.add((config["attack"]["name"], Path(config["model"]["checkpoint"]).name))
        titles.add((job / "results.md").read_text().splitlines()[0])
    assert len(combinations) == 4 and len(titles) == 4  # every run's title tells it apart
    # the table of the grid: 2 x 2, each cell the ACC at 4/255 of its run's results.json
    from robust_seg.reporting.grid import build_grid, to_markdown

    table = build_grid([tmp_path / "outputs/evaluate/multirun/grid"], rows=["model"], columns=["attack"],
                       radii=["4/255"], metrics=["acc"])
    assert len(table.rows) == 2 and len(table.columns) == 2 and not table.flags
    for row, cells in zip(table.rows, table.cells):
        for column, cell in zip(table.columns, cells):
            (run,) = cell.runs
            results = json.loads((run / "results.json").read_text())
            assert f"model={row[0]}" in results["provenance"]["overrides"]
            assert f"attack={column[0]}" in results["provenance"]["overrides"]
            assert cell.mean == results["radii"]["4/255"]["worst_case"]["acc"]
    assert to_markdown(table).count("\n| embedded") == 2


def test_training_hands_over_its_weights_and_the_command_that_evaluates_them(tmp_path):
    """Without export_path the final weights are in the run directory; the printed evaluate command runs on them."""
    import shlex

    trained = run_in_process("train", *TINY, "schedule.epochs=1", "schedule.warmup_epochs=0", "batch_size=8",
                        "max_steps_per_epoch=2", "robust_eval.iterations=0", "dataset.synthetic.num_val=4",
                        "run_name=handover", cwd=tmp_path, check=True)
    lines = dict(line.split(": ", 1) for line in trained.stdout.splitlines() if ": " in line)
    weights = Path(lines["weights"])
    assert weights == tmp_path / "outputs/train/handover/model.pt" and weights.is_file()
    assert Path(lines["run directory"]) == weights.parent and lines["final"].startswith("epoch 1")
    command = shlex.split(lines["evaluate them"])
    assert command[:3] == ["python", "-m", "robust_seg.evaluate"] and f"model.checkpoint={weights}" in command
    assert "dataset.synthetic.num_val=4" in command  # the run's dataset overrides travel with it
    evaluated = run_in_process("evaluate", *command[3:], "logger=none", "max_images=2", "attack.options.iterations=1",
                          "attack.eps=[0,4/255]", "run_name=handover_eval", cwd=tmp_path, check=True)
    results = json.loads((tmp_path / "outputs/evaluate/handover_eval/results.json").read_text())
    assert results["provenance"]["model"]["checkpoint"] == str(weights) and results["images"] == 2
    assert "handover" in evaluated.stdout
    for run in (trained, evaluated):  # not a terminal: plain progress lines with the whole run's ETA, no escapes
        output = run.stdout + run.stderr
        assert "\x1b" not in output and "\r" not in output
        assert any("% of " in line and "ETA" in line for line in output.splitlines()), output[-2000:]


def test_progress_off_a_terminal_prints_plain_lines_with_the_overall_eta(monkeypatch):
    import io

    from robust_seg.run import progress

    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 0.0)
    stream = io.StringIO()
    meter = progress.RunProgress(200, "SEA", "pass", done=50, stream=stream)
    assert meter.bar is None and meter.eta() is None  # nothing measured yet (the resumed 50 do not count)
    meter.update(50)
    meter.milestone("batch 1/2")  # off a terminal the batch's log line says it
    meter.close()
    lines = stream.getvalue().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("SEA: 50% of 200 passes, ") and "ETA " in lines[0]
    assert "\x1b" not in stream.getvalue() and progress.duration(3725) == "1h02m" and progress.plural("batch") == "batches"
