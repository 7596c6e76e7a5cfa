"""Square (robust_seg.attacks.black_box) beside AutoAttack's Square on the same segmentation model and images.

AutoAttack's ``SquareAttack`` (``autoattack/square.py`` of a checkout of fra31/auto-attack, given as
``--autoattack DIR``; not a dependency of the project) is run unchanged except for its objective: its
``margin_and_loss`` is replaced by the project's segmentation objective (the masked margin: the mean over labelled
pixels of ``max(0, z_y - max_{j != y} z_j)``), so that "fooled" means the same for both (every labelled pixel
misclassified) and AutoAttack drops an image from its queries exactly when the project's Square does. Both stop
querying a fooled image; what differs is their bookkeeping (AutoAttack draws one window per query for the whole
batch, the project one per image from its own seed).

Interleaved rounds (project, AutoAttack, project, ...); each reports the wall time per image-query (wall time /
queries actually spent, summed over images), the robust accuracy, the images fooled and the mean / median queries
of the fooled images; a bare forward of the batch divided by the batch size is the unit. The project's Square is
also run with ``skip_solved=False`` to show the forwards skipping saves.

    .venv/bin/python scripts/compare_square_autoattack.py --autoattack /path/to/auto-attack [--model margin]
        [--batch 16] [--size 64] [--queries 1000] [--eps 8/255] [--rounds 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_attacks import load_batch, load_model, parse_eps  # noqa: E402

from robust_seg.attacks.black_box import MaskedMargin, square  # noqa: E402


def autoattack_square(directory: str):
    """AutoAttack's SquareAttack with the segmentation objective (module doc)."""
    sys.path.insert(0, directory)
    from autoattack.square import SquareAttack

    class SegmentationSquare(SquareAttack):
        def margin_and_loss(self, x, y):
            objective, _ = MaskedMargin(y, self.num_classes)(self.predict(x))
            return objective, objective

    return SegmentationSquare


class RedMargin(torch.nn.Module):
    """``--model margin``: two classes per pixel from a 3x3 box filter of the red channel, z_0 = 40 (blur(x_R) - 0.5)
    plus a small term (|.| <= 0.01) from the benchmark's random conv net (so that a forward costs what a small
    segmentation net costs), z_1 = -z_0; on images whose red channel is 0.5 + m_i, image i can be fooled entirely
    about iff m_i < eps: a batch with margins spread below eps has images a black-box attack fools early and
    images it fools late or never."""

    def __init__(self, width: int):
        super().__init__()
        self.blur = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode="replicate")
        self.blur.weight.data.fill_(1 / 9)
        self.net = load_model("toy", width)

    def forward(self, images):
        z = 40 * (self.blur(images[:, :1]) - 0.5) + 0.01 * torch.tanh(self.net(images)[:, :1])
        return torch.cat([z, -z], 1)


def margin_batch(batch: int, size: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with red-channel margins from eps / 8 to 1.2 eps (most below eps), labels class 0, except the last
    two rows and columns, which are unlabelled (255): AutoAttack draws a window's corner from ``[0, h - s)``
    (``random_int``), so its windows never reach the last row and column, whose stripes keep their random signs,
    and the 3x3 blur carries them one pixel inwards; labelled, those pixels would make every image unfoolable for
    AutoAttack's Square whatever its margin."""
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4
    images[:, 0] = 0.5 + torch.linspace(eps / 8, 1.2 * eps, batch).view(batch, 1, 1)
    labels = torch.zeros(batch, size, size, dtype=torch.long)
    labels[:, -2:], labels[:, :, -2:] = 255, 255
    return images, labels


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def summary(name: str, seconds: float, queries: torch.Tensor, accuracy: torch.Tensor, unit: float) -> dict:
    fooled = accuracy == 0
    spent = float(queries.sum())
    row = {"name": name, "per_query": seconds / spent, "ratio": seconds / spent / unit, "acc": 100 * float(accuracy.mean()),
           "fooled": int(fooled.sum()), "mean_q": float(queries[fooled].mean()) if fooled.any() else float("nan"),
           "median_q": float(queries[fooled].median()) if fooled.any() else float("nan"), "spent": spent,
           "seconds": seconds}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--autoattack", required=True, help="a checkout of github.com/fra31/auto-attack")
    parser.add_argument("--model", default="margin", help="margin (default: a batch Square mostly fools), toy, "
                        "embedded or package.module:factory (scripts/benchmark_attacks.py)")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--eps", type=parse_eps, default=8 / 255)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "margin":
        model = RedMargin(args.width).eval()
        images, labels = margin_batch(args.batch, args.size, args.eps)
    else:
        model = load_model(args.model, args.width)
        images, labels = load_batch(args.model, model, args.batch, args.size)
    num_classes = model(images[:1]).shape[1]
    attack_class = autoattack_square(args.autoattack)

    def bare_forward() -> float:
        with torch.no_grad():
            seconds, _ = timed(lambda: [model(images) for _ in range(10)])
        return seconds / 10 / args.batch

    def ours(skip: bool):
        result = square(model, images, labels, eps=args.eps, queries=args.queries, skip_solved=skip,
                        image_seeds=list(range(args.batch)))
        return result.extras["forwards"].double(), result.accuracy / 100  # a fraction, as AutoAttack's

    def theirs():
        attack = attack_class(model, norm="Linf", eps=args.eps, n_queries=args.queries, p_init=0.8, seed=0)
        attack.num_classes = num_classes
        attack.init_hyperparam(images)
        torch.random.manual_seed(attack.seed)  # as AutoAttack's perturb() does before its runs
        queries, adversarial = attack.attack_single_run(images, labels)
        with torch.no_grad():
            accuracy = ((model(adversarial).argmax(1) == labels) & (labels != 255)).flatten(1).sum(1) / \
                (labels != 255).flatten(1).sum(1).clamp_min(1)
        return queries.double(), accuracy

    print(f"model {args.model}, batch {args.batch} x 3 x {args.size} x {args.size}, eps {args.eps * 255:g}/255, "
          f"{args.queries} queries, {torch.get_num_threads()} thread(s), {args.rounds} interleaved rounds")
    rows: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for name, run in (("robust_seg Square", lambda: ours(True)), ("AutoAttack Square", theirs),
                          ("robust_seg Square, no skipping", lambda: ours(False))):
            unit = bare_forward()
            seconds, (queries, accuracy) = timed(run)
            unit = (unit + bare_forward()) / 2
            rows.setdefault(name, []).append(summary(name, seconds, queries, accuracy, unit))
    print("| attack | time per image-query / bare forward per image | robust ACC % | fooled | queries of the fooled "
          "(mean / median) | image-queries spent | wall s |")
    print("|---|---|---|---|---|---|---|")
    for name, found in rows.items():
        ratios = [r["ratio"] for r in found]
        last = found[-1]
        print(f"| {name} | {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) | {last['acc']:.1f} | "
              f"{last['fooled']}/{args.batch} | {last['mean_q']:.0f} / {last['median_q']:.0f} | {last['spent']:.0f} | "
              f"{statistics.median(r['seconds'] for r in found):.1f} |")
    ours_spent, full_spent = rows["robust_seg Square"][-1]["spent"], rows["robust_seg Square, no skipping"][-1]["spent"]
    print(f"skipping solved images saves {100 * (1 - ours_spent / full_spent):.0f}% of the image-queries; "
          f"time per image-query, robust_seg / AutoAttack: "
          f"{statistics.median(r['per_query'] for r in rows['robust_seg Square']) / statistics.median(r['per_query'] for r in rows['AutoAttack Square']):.2f}")


if __name__ == "__main__":
    main()
