"""Per-iteration cost of SEA, APGD, PGD, ALMA prox, DAG and Square relative to one bare pass.

ratio = attack time / (runs x iterations x t_fb), where t_fb is the mean time of one forward+backward of the same
batch through the same model with the gradient taken w.r.t. the input only (loss: summed pixel-wise cross-entropy,
the cheapest attack objective). The bare passes are interleaved with the attack's own: the model the attack gets
runs one timed bare pass before every ``--every``-th call the attack makes to it, so that the unit is measured at the
same moments as the attack, whatever the machine's speed does meanwhile (on a shared machine one pass varies by up
to 2x within a minute); the attack's time is the round's time less those bare passes. Each attack is timed in
``--rounds`` rounds; printed: the median ratio over the rounds and its range, for wall-clock and process CPU time.
SEA runs with skip_solved=False so that every run attacks the whole batch (runs = number of losses). ``--threads
1,2`` measures with one thread (the attack's own cost per pass) and with two, where the model's large operations
split over the threads while the attack's bookkeeping, many small operations whose cost is mostly per-call
overhead, gains little, so the ratio is higher. Targets: ratio <= 1.05 for SEA (one thread), <= 1.10 for APGD
and PGD; <= 1.15 for ALMA prox (its prox and per-pixel bookkeeping must not dominate). DAG (``--attacks dag``)
against the same pass; Square (``--attacks square``, queries = iterations) against one bare forward without
gradients per image-query actually spent (solved images stop querying; the share of queries saved is printed),
its cost unit (target 1.10).

Usage:
    python scripts/benchmark_attacks.py [--model package.module:factory] [--batch 8] [--size 64]
        [--iterations 300] [--eps 8/255] [--device cpu|cuda] [--threads N[,N...]] [--width 32] [--rounds 3]
        [--every 1]

``--model`` names a zero-argument callable returning a segmentation model (images in [0, 1]
-> logits at input resolution); default: the shipped small model on synthetic validation images
(``embedded``); ``toy`` is the small conv net below (random weights, random images);
``paper:NAME`` builds configs/model/NAME.yaml (e.g. ``paper:upernet_convnext_t``) with random
weights and 21 classes, on random images labelled by the model (GPU: ``--size 512``).
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from robust_seg.attacks.apgd import apgd
from robust_seg.attacks.minimal_norm import alma_prox, dag
from robust_seg.attacks.pgd import pgd
from robust_seg.attacks.sea import SEA_LOSSES, sea
from robust_seg.attacks.black_box import square


class SmallSegmentationModel(nn.Module):
    """A small encoder-decoder conv net (stride 4, bilinear upsampling); 0.10 M parameters at width 32."""

    def __init__(self, num_classes: int = 21, width: int = 32):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))

        def block(channels_in: int, channels_out: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(inplace=True),
            )

        self.encoder = nn.Sequential(
            block(3, width, 2), block(width, width, 1), block(width, 2 * width, 2), block(2 * width, 2 * width, 1)
        )
        self.head = nn.Sequential(block(2 * width, 2 * width, 1), nn.Conv2d(2 * width, num_classes, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.encoder((images - self.mean) / self.std))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def small_segmentation_model(width: int = 32) -> nn.Module:
    """Default benchmark model: seeded random weights, eval mode."""
    torch.manual_seed(0)
    return SmallSegmentationModel(width=width).eval()


def load_model(spec: str, width: int) -> nn.Module:
    if spec == "toy":
        return small_segmentation_model(width)
    if spec == "embedded":
        spec = "robust_seg.models.embedded:load_embedded_model"
    if spec.startswith("paper:"):
        from omegaconf import OmegaConf

        from robust_seg.models.build import build_model
        from robust_seg.names import ROOT

        torch.manual_seed(0)
        return build_model(OmegaConf.load(ROOT / "configs" / "model" / f"{spec[6:]}.yaml"), num_classes=21).eval()
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)()


def load_batch(spec: str, model: nn.Module, batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic validation images and labels for the embedded model, else random images labelled by the model."""
    if spec == "embedded" and size == 64:
        from omegaconf import OmegaConf

        from robust_seg.data import build_dataset
        from robust_seg.names import ROOT

        dataset = build_dataset(OmegaConf.load(ROOT / "configs/dataset/synthetic.yaml"), split="val", train=False)
        items = [dataset[i] for i in range(batch)]
        return torch.stack([i["image"] for i in items]), torch.stack([i["label"] for i in items])
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    images = images.to(next(model.parameters()).device)
    with torch.no_grad():
        return images, model(images).argmax(1)


DEVICE = torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Interleaved:
    """The benchmarked model as an attack sees it, running one timed bare pass before every ``every``-th call."""

    def __init__(self, model, bare, every: int):
        self.model, self.bare, self.every = model, bare, every
        self.calls, self.times = 0, []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.calls % self.every == 0:
            self.times.append(timed(self.bare))
        self.calls += 1
        return self.model(images)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def bare_forward(model, images) -> None:
    """A forward without gradients (the unit of a black-box query)."""
    with torch.no_grad():
        model(images)


def forward_backward(model, images, labels) -> None:
    """A forward and a backward w.r.t. the input (the unit of a white-box iteration), under any grad mode."""
    with torch.enable_grad():
        points = images.detach().requires_grad_(True)
        loss = F.cross_entropy(model(points), labels, ignore_index=255, reduction="sum")
        torch.autograd.grad(loss, points)


def timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``function()``, device synchronised."""
    synchronize(DEVICE)
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    synchronize(DEVICE)
    return time.perf_counter() - wall, time.process_time() - cpu


def parse_eps(text: str) -> float:
    return float(Fraction(text))


def parse_thread_counts(text: str) -> list[int]:
    """'2' or '1,2' -> [2] or [1, 2]; argparse turns the ValueError into a one-line usage error."""
    counts = [int(part) for part in text.split(",")]
    if min(counts) < 1:
        raise ValueError(text)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="embedded (default), toy, or package.module:factory")
    parser.add_argument("--width", type=int, default=32, help="channels of the default model (ignored with --model)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--eps", type=parse_eps, default=8 / 255)
    parser.add_argument("--every", type=int, default=1, help="one bare pass before every N-th model call of the attack")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each attack (median ratio reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--attacks", default="pgd,apgd,sea,alma_prox")
    parser.add_argument("--threads", type=parse_thread_counts, default=None,
                        help="torch CPU threads, or a comma-separated list to benchmark each in turn (e.g. 1,2); "
                             "default: torch's default")
    args = parser.parse_args()
    for threads in args.threads or [None]:
        if threads is not None:
            torch.set_num_threads(threads)
        benchmark(args)


def benchmark(args: argparse.Namespace) -> None:
    """Every attack of ``args.attacks`` in ``args.rounds`` rounds at the current torch thread count."""
    global DEVICE
    DEVICE = device = torch.device(args.device)
    model = load_model(args.model, args.width).to(device)
    images, labels = (t.to(device) for t in load_batch(args.model, model, args.batch, args.size))
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch} x 3 x {args.size} x {args.size}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, eps {args.eps * 255:g}/255, "
          f"{args.iterations} iterations")

    for _ in range(5):  # warm-up
        forward_backward(model, images, labels)
    forward_backward_pass = lambda: forward_backward(model, images, labels)
    forward_pass = lambda: bare_forward(model, images)
    attacks = {  # name: (runs x iterations passes, attack of a model, the bare pass it is measured against)
        "pgd": (1, lambda m: pgd(m, images, labels, eps=args.eps, loss="ce", iterations=args.iterations,
                                 step_size=args.eps / 4), forward_backward_pass),
        "apgd": (1, lambda m: apgd(m, images, labels, eps=args.eps, loss="mask_ce", iterations=args.iterations,
                                   schedule="red", generator=torch.Generator().manual_seed(0)), forward_backward_pass),
        "sea": (len(SEA_LOSSES), lambda m: sea(m, images, labels, eps=args.eps, iterations=args.iterations,
                                               skip_solved=False, generator=torch.Generator().manual_seed(0)),
                forward_backward_pass),
        "alma_prox": (1, lambda m: alma_prox(m, images, labels, iterations=args.iterations), forward_backward_pass),
        # a step size too small to reach APSR 99%: every image runs every iteration
        "dag": (1, lambda m: dag(m, images, labels, iterations=args.iterations, step_size=1e-6),
                forward_backward_pass),
        # queries = iterations; the start costs one more forward; solved images stop querying (counted below)
        "square": (1, lambda m: spent.update(forwards=square(
            m, images, labels, eps=args.eps, queries=args.iterations,
            image_seeds=list(range(args.batch))).extras["forwards"]), forward_pass),
    }
    spent = {}
    targets = {"alma_prox": 1.15, "sea": 1.05}
    all_fb = []
    for name in args.attacks.split(","):
        runs, attack, bare = attacks[name]
        passes = runs * args.iterations
        wall_ratios, cpu_ratios, walls = [], [], []
        for _ in range(args.rounds):
            probe = Interleaved(model, bare, args.every)
            wall, cpu = timed(lambda: attack(probe))
            wall -= sum(w for w, _ in probe.times)
            cpu -= sum(c for _, c in probe.times)
            if name == "square":  # per image-query actually spent, against a bare forward per image
                passes = float(spent["forwards"].sum()) / args.batch
            wall_ratios.append(wall / (passes * statistics.fmean(w for w, _ in probe.times)))
            cpu_ratios.append(cpu / (passes * statistics.fmean(c for _, c in probe.times)))
            walls.append(wall)
            if bare is forward_backward_pass:
                all_fb += probe.times
        target = targets.get(name, 1.10)
        wall_ratio, cpu_ratio = statistics.median(wall_ratios), statistics.median(cpu_ratios)
        unit = "forward" if bare is forward_pass else "forward+backward"
        if name == "square":
            saved = 1 - float(spent["forwards"].sum()) / (args.batch * args.iterations)
            print(f"square   : {float(spent['forwards'].sum()):.0f} image-queries spent of {args.batch * args.iterations}"
                  f" ({100 * saved:.0f}% saved by skipping solved images); the ratio is per image-query spent")
        print(f"{name:9s}: {runs} run(s) x {args.iterations} iterations, wall {statistics.median(walls):7.2f} s, "
              f"ratio to the bare {unit} {wall_ratio:.3f} {'OK' if wall_ratio <= target else f'ABOVE {target:.2f}'} "
              f"(rounds {min(wall_ratios):.3f}-{max(wall_ratios):.3f}); CPU-time ratio {cpu_ratio:.3f} "
              f"{'OK' if cpu_ratio <= target else f'ABOVE {target:.2f}'}", flush=True)
    fb_wall = [w for w, _ in all_fb]
    if fb_wall:
        print(f"bare forward+backward over {len(fb_wall)} passes: wall mean {statistics.fmean(fb_wall) * 1e3:.2f} ms, "
              f"median {statistics.median(fb_wall) * 1e3:.2f} ms (min {min(fb_wall) * 1e3:.2f}, "
              f"max {max(fb_wall) * 1e3:.2f})")

if __name__ == "__main__":
    main()
