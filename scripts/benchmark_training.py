"""Cost of one k-step AT training step relative to (k + 1) clean training steps, same batch (issue target <= 1.10).

The SEA paper (Sec. 3) counts k-step AT as k + 1 times the cost of clean training: k attack steps
(forward + backward w.r.t. the input) plus the training step (forward + backward + optimiser step).
This script times, on one batch of the synthetic data and the model of the training config:

  clean step: training forward (main + auxiliary head), backward, optimiser step;
  AT step:    ``robust_seg.training.adversary.adversarial_examples`` (the project's PGD, eval mode)
              followed by that same clean step on the adversarial batch;

and prints median(AT step) / ((k + 1) x median(clean step)) per k. Steps alternate between the two kinds
so that machine load affects both alike; medians over ``--repeats``.

    .venv/bin/python scripts/benchmark_training.py [--batch 16] [--steps 2 5] [--repeats 15] [--threads 1] [overrides...]

One thread by default: on a shared CPU, two threads per process make both timings swing by 2-4x.

Extra arguments are Hydra overrides of configs/train.yaml (default model: small_upernet_convnext, 64x64).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robust_seg.run.config import register_configs
    from robust_seg.training.config import TrainConfig
    from robust_seg.data import build_dataset
    from robust_seg.models import build_model
    from robust_seg.training.adversary import adversarial_examples
    from robust_seg.training.losses import build_train_loss
    from robust_seg.training.loop import training_loss
    from robust_seg.training.optim import build_optimizer

    register_configs(train=TrainConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", ["logger=none", "scheme=at", *args.overrides])
    torch.manual_seed(0)
    dataset = build_dataset(cfg.dataset, split=cfg.dataset.train_split, train=True)
    samples = [dataset[i] for i in range(args.batch)]
    images = torch.stack([s["image"] for s in samples])
    labels = torch.stack([s["label"] for s in samples])
    model = build_model(cfg.model, cfg.dataset.num_classes).train()
    optimizer = build_optimizer(cfg.optimizer, model)
    loss_fn = build_train_loss("ce", cfg.dataset.num_classes)

    def clean_step(inputs):
        loss = training_loss(model, inputs, labels, loss_fn, cfg.auxiliary_weight)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed(job) -> float:
        started = time.perf_counter()
        job()
        return time.perf_counter() - started

    print(f"model {cfg.model.name}, batch {args.batch}x3x{images.shape[-2]}x{images.shape[-1]}, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats (medians)")
    for k in args.steps:
        attack = OmegaConf.merge(cfg.scheme.adversarial, {"steps": k})

        def at_step():
            clean_step(adversarial_examples(model, images, labels, attack))

        for _ in range(2):  # warm-up
            at_step()
            clean_step(images)
        clean_times, at_times = [], []
        for _ in range(args.repeats):
            clean_times.append(timed(lambda: clean_step(images)))
            at_times.append(timed(at_step))
        clean, adversarial = statistics.median(clean_times), statistics.median(at_times)
        ratio = adversarial / ((k + 1) * clean)
        print(f"k={k}: clean step {1e3 * clean:.1f} ms, AT step {1e3 * adversarial:.1f} ms, "
              f"AT / ((k+1) x clean) = {ratio:.3f}")


if __name__ == "__main__":
    main()
