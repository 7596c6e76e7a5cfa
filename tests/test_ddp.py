"""DDP (gloo, CPU, 2 processes; ``runtime.processes=2``, torchrun's launch with forked workers, and torchrun itself
for a rank that diverges) gives the loss curve and weights of 1 process at the same global batch.

Exact comparison needs the two runs to compute the same gradients, so the test removes what legitimately
differs between them: (i) the images each process sees -- the DistributedSampler splits another
permutation than the 1-process sampler, so the training split is exactly one global batch (every step
sees all of it); (ii) batch statistics -- the model is the small Segmenter (LayerNorm only, no BatchNorm;
with BatchNorm each process normalises with its own half batch unless model.sync_bn=true on GPUs);
(iii) stochastic depth (drop path 0) and unlabelled pixels (border_width=0: the mean of the two
processes' per-pixel means is then the 1-process mean). AT (1 PGD step, eval mode) runs in both.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, TINY, run_in_process

SAME_PROBLEM = [*TINY, "model=small_segmenter_vit", "model.mmseg.backbone.drop_path_rate=0",
                "dataset.synthetic.num_train=8", "dataset.synthetic.border_width=0", "batch_size=8",
                "schedule.epochs=3", "schedule.warmup_epochs=1", "scheme=at", "scheme.adversarial.steps=1",
                "robust_eval.iterations=2", "robust_eval.max_images=4", "eval_every=3", "runtime.threads=1",
                # SGD: Adam would turn float-rounding noise in zero-gradient parameters (attention key biases)
                # into lr-sized steps, a real but irrelevant difference between the runs
                "optimizer.name=sgd", "optimizer.lr=0.05", "optimizer.weight_decay=0"]


def _train(processes: int, run_name: str, cwd):
    """Train in this process, or with ``runtime.processes`` (torchrun's launch, forked workers) in a subprocess."""
    if processes == 1:
        run_in_process("train", *SAME_PROBLEM, f"run_name={run_name}", cwd=cwd, check=True)
    else:
        env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        completed = subprocess.run([sys.executable, "-m", "robust_seg.train", *SAME_PROBLEM,
                                    f"runtime.processes={processes}", f"run_name={run_name}"],
                                   cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stderr[-3000:]
    run_dir = cwd / "outputs/train" / run_name
    return (json.loads((run_dir / "train_results.json").read_text()),
            torch.load(run_dir / "checkpoints/last.pt", weights_only=True))


def test_two_gloo_processes_match_one_process(tmp_path):
    single, single_state = _train(1, "single", tmp_path)
    ddp, ddp_state = _train(2, "ddp", tmp_path)

    single_losses = [h["train_loss"] for h in single["history"]]
    ddp_losses = [h["train_loss"] for h in ddp["history"]]
    assert len(ddp_losses) == 3
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4, abs=1e-5)
    assert single_losses[-1] < single_losses[0]  # it trains
    for key, value in single_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][key], value, rtol=1e-3, atol=1e-5, msg=key)
    # rank 0 alone validated and wrote: one results file, metrics on the full validation split
    assert ddp["final"]["val_miou"] == pytest.approx(single["final"]["val_miou"], abs=1.0)
    assert "robust_acc" in ddp["final"]


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_two_task_ddp_training(tmp_path):
    """`-m hydra/launcher=submitit_local` (the local stand-in for configs/hydra/launcher/slurm.yaml): two
    submitit tasks form the DDP group from submitit's environment and train one epoch."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [sys.executable, "-m", "robust_seg.train", "-m", "hydra/launcher=submitit_local",
         "hydra.launcher.tasks_per_node=2", *TINY, "dataset.synthetic.num_train=32", "batch_size=8",
         "schedule.epochs=1", "robust_eval.iterations=0", "runtime.threads=1", "run_name=submitit"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    job_dir = tmp_path / "outputs/train/multirun/submitit/0"
    assert json.loads((job_dir / "train_results.json").read_text())["epochs"] == 1
    assert "2 process(es) x micro batch 4 x 1 accumulation step(s) = global batch 8" in \
        (job_dir / "train.log").read_text()


NAN_ON_RANK_1 = '''
import itertools, os, sys
import robust_seg.training.loop as loop

original = loop.build_train_loss


def diverging_on_rank_1(name, num_classes, **options):
    loss = original(name, num_classes, **options)
    calls = itertools.count(1)

    class Diverging(type(loss)):
        def __call__(self, logits, labels):
            value = super().__call__(logits, labels)
            return value * float("nan") if os.environ["RANK"] == "1" and next(calls) == 3 else value

    loss.__class__ = Diverging
    return loss


loop.build_train_loss = diverging_on_rank_1
import runpy

runpy.run_module("robust_seg.train", run_name="__main__", alter_sys=True)
'''


def test_a_loss_diverging_on_one_rank_stops_every_rank(tmp_path):
    """Rank 1's loss turns NaN at its 3rd step: every rank stops by itself with the one-line error (the decision
    is collective). Without it only rank 1 stops; torchrun's agent then kills rank 0, but launchers that do not
    (SLURM tasks through submitit) would leave it waiting in the next gradient all-reduce until the timeout."""
    script = tmp_path / "diverge.py"
    script.write_text(NAN_ON_RANK_1)
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    completed = subprocess.run([*torchrun, str(script), *SAME_PROBLEM, "schedule.epochs=5", "run_name=diverge"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0
    assert completed.stderr.count("training loss is not finite on a rank at epoch 3, step 1") == 2, completed.stderr[-3000:]
    state = torch.load(tmp_path / "outputs/train/diverge/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 2
