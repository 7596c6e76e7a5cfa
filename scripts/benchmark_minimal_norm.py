"""Benchmark: ALMA prox time per iteration / one bare forward+backward (w.r.t. the input) of the same batch.

The prox (Algorithm 5.1, 29 vectorised ternary-search steps) and the per-pixel
bookkeeping of Algorithm IV-2 should not dominate: target ratio <= 1.15 on CPU.
Usage: python scripts/benchmark_minimal_norm.py [--batch 8] [--size 64] [--iterations 20] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from robust_seg.attacks.minimal_norm import alma_prox


class SmallConvSegmenter(nn.Module):
    """A small fully convolutional segmentation model (4 conv layers, 32 channels, 21 classes)."""

    def __init__(self, classes: int = 21, width: int = 32):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, classes, 1),
        )

    def forward(self, x):
        return self.layers(x)


def forward_backward_seconds(model, images, labels, repeats):
    """Median time of one forward + backward w.r.t. the input (CE loss), the attack's unit of cost."""
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        delta = torch.zeros_like(images, requires_grad=True)
        loss = nn.functional.cross_entropy(model(images + delta), labels)
        torch.autograd.grad(loss, delta)
        times.append(time.perf_counter() - start)
    return sorted(times[2:])[len(times[2:]) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SmallConvSegmenter().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images = torch.rand(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        labels = model(images).argmax(1)

    ratios = []
    for _ in range(args.repeats):  # interleaved, so load changes on the machine hit both sides alike
        bare = forward_backward_seconds(model, images, labels, repeats=args.iterations // 2)
        start = time.perf_counter()
        alma_prox(model, images, labels, iterations=args.iterations)
        per_iteration = (time.perf_counter() - start) / args.iterations
        ratios.append(per_iteration / bare)
        print(f"forward+backward {bare * 1e3:.1f} ms, ALMA prox iteration {per_iteration * 1e3:.1f} ms, "
              f"ratio {per_iteration / bare:.3f}")
    print(f"ALMA prox time per iteration / forward+backward (median of {args.repeats}): "
          f"{sorted(ratios)[len(ratios) // 2]:.3f}  (batch {args.batch}, {args.size}x{args.size}, "
          f"{args.threads} threads; target <= 1.15)")


if __name__ == "__main__":
    main()
