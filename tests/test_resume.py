"""Kill a run mid-way, resume it, and get what an uninterrupted run gets (training and evaluation). The killed run is a
real process (SIGKILL); the uninterrupted and the resumed runs go through the same entry point in this process."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT, TINY, run_in_process

TRAIN = [*TINY, "schedule.epochs=2", "schedule.warmup_epochs=1", "batch_size=8", "max_steps_per_epoch=3",
         "robust_eval.iterations=0", "eval_every=2"]
EVALUATE = [*TINY, "attack=sea", "attack.eps=[0,4/255]", "attack.options.iterations=3", "max_images=6",
            "batch_size=2"]  # three batches: killed after two


def _kill_when(module, overrides, cwd, ready, timeout=300):
    """Start an entry point, SIGKILL it as soon as ``ready()`` holds; return whether it was killed mid-way."""
    env = {"WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",  # threads as the other runs
           **{k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}}
    process = subprocess.Popen([sys.executable, "-m", f"robust_seg.{module}", *overrides], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.02)
    process.kill()
    return False


def test_training_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    run_in_process("train", *TRAIN, "run_name=straight", cwd=tmp_path, check=True)
    checkpoint = tmp_path / "outputs/train/interrupted/checkpoints/last.pt"

    def after_first_epoch():
        if not checkpoint.exists():
            return False
        return torch.load(checkpoint, weights_only=True)["epoch"] == 1

    assert _kill_when("train", [*TRAIN, "run_name=interrupted"], tmp_path, after_first_epoch)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    refused = run_in_process("train", *TRAIN, "run_name=interrupted", cwd=tmp_path)
    assert refused.returncode != 0 and "resume=true" in refused.stderr
    run_in_process("train", *TRAIN, "run_name=interrupted", "resume=true", cwd=tmp_path, check=True)

    straight = torch.load(tmp_path / "outputs/train/straight/checkpoints/last.pt", weights_only=True)
    resumed = torch.load(checkpoint, weights_only=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    final = json.loads((tmp_path / "outputs/train/interrupted/train_results.json").read_text())
    assert final["epochs"] == 2 and final["final"]["epoch"] == 2


@pytest.mark.slow  # the default suite resumes killed evaluations in-process (test_run_integrity, test_shards) and
# SIGKILLs a training run above, whose checkpoint goes through the same atomic writes (reporting/files.py)
def test_evaluation_killed_between_batches_resumes_to_the_same_table(tmp_path):
    run_in_process("evaluate", *EVALUATE, "run_name=straight", cwd=tmp_path, check=True)
    batches = tmp_path / "outputs/evaluate/interrupted/batches.jsonl"

    def after_two_batches():
        return batches.exists() and batches.read_text().count("\n") >= 2

    assert _kill_when("evaluate", [*EVALUATE, "run_name=interrupted"], tmp_path, after_two_batches)
    assert not (tmp_path / "outputs/evaluate/interrupted/results.json").exists()
    run_in_process("evaluate", *EVALUATE, "run_name=interrupted", "resume=true", cwd=tmp_path, check=True)

    straight = json.loads((tmp_path / "outputs/evaluate/straight/results.json").read_text())
    resumed = json.loads((tmp_path / "outputs/evaluate/interrupted/results.json").read_text())
    assert straight["radii"] == resumed["radii"]
    def table(name):  # the report without the record of the command (its run_name and resume=true differ)
        return (tmp_path / f"outputs/evaluate/{name}/results.md").read_text().split("| attack |")[1].split("Wall time")[0]

    assert table("interrupted") == table("straight")
    records = [json.loads(line) for line in batches.read_text().splitlines()]
    assert [r["batch"] for r in records] == [0, 1, 2]
