"""Square attack (Andriushchenko et al. 2020, Linf), adapted to segmentation: black-box, forward passes only.

Algorithm (the paper's Linf version, AutoAttack's schedule):

- start: x + eps * s with vertical stripes s (one random sign per image, channel and column), clipped to [0, 1];
- each query changes one random square window of side h(t) of the current best perturbation to a random vertex of
  the ball (one random sign per channel: +-eps on the whole window), and keeps the change only if the objective
  improves; the window's area fraction p(t) starts at ``p_init`` = 0.8 and halves at 10, 50, 200, 500, 1000, 2000,
  4000, 6000 and 8000 ten-thousandths of the query budget; ``h = max(1, round(sqrt(p H W)))``; the window's
  corner is uniform over all ``H - h + 1`` (``W - h + 1``) positions (AutoAttack's ``random_int`` draws from
  ``[0, H - h)``, so its windows never reach the last row and column).

Segmentation objective, from the output alone (minimised): the masked margin, the mean over the labelled pixels
of ``max(0, z_y - max_{j != y} z_j)`` (targeted: ``max(0, max_{j != t} z_j - z_t)``). It is zero exactly when
every labelled pixel is misclassified (reaches the target), and correctly classified pixels pull it up by their
margin, so accepted updates push the remaining correct pixels over their boundary. Returned per image: among the
accepted iterates (the start included), the one with the fewest correct pixels (targeted: the most on target) by
their margins, ties keeping the earliest, as APGD does; its predictions (arg-max, computed once at the end) give
the reported accuracy.

Batched with per-image state: every image draws its stripes, windows and signs from a counter-based hash of its
own seed and the query number, so its run does not depend on the other images of its batch, its shard or its
process. An image with no correct pixel left (its objective is 0: solved, nothing left to improve) stops
querying, and with ``skip_solved`` (the default) it also leaves the forward passes, as AutoAttack's Square drops a
fooled image: the remaining images' results are the same as without skipping. Cost: one forward per query per
image still attacked (extras 'forwards': the queries each image actually spent), no backward.
"""
from __future__ import annotations

import math

import torch

from robust_seg import IGNORE_INDEX
from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.losses import predicted_classes
from robust_seg.attacks.progress import tick
from robust_seg.attacks.pgd import draw_image_seeds, mix_seed
from robust_seg.attacks.result import AttackResult
from robust_seg.attacks.sea import SEA_LOSSES, sea
from robust_seg.metrics.segmentation import pixel_accuracy

P_INIT = 0.8
HALVING_POINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
"""Where (in ten-thousandths of the query budget) the window's area fraction halves (AutoAttack's schedule)."""
DRAW_BLOCK = 64
"""Queries whose random windows and signs are drawn together (the draws are per image and query either way)."""
_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer


def window_fraction(query: int, queries: int, p_init: float = P_INIT) -> float:
    """p(t): ``p_init`` halved at each point of ``HALVING_POINTS`` the rescaled query number has passed."""
    position = int(query / queries * 10000)
    return p_init / 2 ** sum(position > point for point in HALVING_POINTS)


def hashed(seeds: torch.Tensor, *keys: int | torch.Tensor) -> torch.Tensor:
    """Counter-based random 62-bit integers: a splitmix64-style hash of (per-image seed, keys), int64 arithmetic."""
    state = seeds.clone()
    for key in keys:
        state = state ^ (key if isinstance(key, torch.Tensor) else torch.as_tensor(key, dtype=torch.int64))
        state = state + _GOLDEN
        state = (state ^ ((state >> 30) & 0x3FFFFFFFF)) * -4658895280553007687  # 0xBF58476D1CE4E5B9
        state = (state ^ ((state >> 27) & 0x1FFFFFFFFF)) * -7723592293110705685  # 0x94D049BB133111EB
        state = state ^ ((state >> 31) & 0x1FFFFFFFF)
    return state & 0x3FFFFFFFFFFFFFFF


class MaskedMargin:
    """The objective (module doc) for fixed labels, with the label mask computed once: ``(objective per image,
    per-pixel correct mask)`` of logits."""

    def __init__(self, labels: torch.Tensor, num_classes: int, targeted: bool = False):
        self.valid = labels != IGNORE_INDEX
        safe = torch.where(self.valid, labels, torch.zeros_like(labels)).unsqueeze(1)
        self.index = safe
        # a huge offset on the label's logit: max_{j != y} z_j as one subtraction and one max (no masked copy)
        self.label_offset = torch.zeros((labels.shape[0], num_classes, *labels.shape[1:]), dtype=torch.float32,
                                        device=labels.device).scatter_(1, safe, 1e30)
        self.count = self.valid.flatten(1).sum(1).clamp_min(1)
        self.targeted = targeted

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Of the logits of the whole batch, or of the images ``rows`` (indices) in that order."""
        index, offset, valid, count = (self.index, self.label_offset, self.valid, self.count) if rows is None else \
            (self.index[rows], self.label_offset[rows], self.valid[rows], self.count[rows])
        label_logit = logits.gather(1, index).squeeze(1)
        other = (logits - offset.to(logits.dtype)).amax(1)
        margin = other.sub_(label_logit) if self.targeted else label_logit.sub_(other)
        hits = (margin > 0) & valid
        objective = margin.clamp_min_(0).mul_(valid).flatten(1).sum(1) / count
        return objective, hits


def square(model, images: torch.Tensor, labels: torch.Tensor, *, eps: float, queries: int = 5000,
           p_init: float = P_INIT, targeted: bool = False, target_labels: torch.Tensor | None = None,
           generator: torch.Generator | None = None, image_seeds: list[int] | None = None,
           start: torch.Tensor | None = None, skip_solved: bool = True) -> AttackResult:
    """Square attack on a batch (module doc). ``start``: perturbed images to start from instead of the stripes
    (e.g. SEA's worst case, ``sea_square``); they must lie in the eps-ball. ``skip_solved``: solved images leave
    the forward passes (same results; False forwards the whole batch at every query). extras: 'objective' (masked
    margin at the returned iterate), 'forwards' / 'backwards' (the passes each image actually ran: with skipping,
    the queries it took to be solved, else the budget)."""
    if targeted and target_labels is None:
        raise ValueError("a targeted attack needs target_labels")
    images = images.detach()
    batch, channels, height, width = images.shape
    device = images.device
    goal = target_labels if targeted else labels
    seeds = torch.tensor(image_seeds if image_seeds is not None else draw_image_seeds(batch, generator),
                         dtype=torch.int64, device=device)

    valid = goal != IGNORE_INDEX
    labelled = valid.flatten(1).sum(1).clamp_min(1)

    def score(hits: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Lower is stronger: the share of labelled pixels still correct (targeted: minus those on target), from
        the margins (a tie counts as not correct; the reported accuracy comes from the arg-max at the end)."""
        share = (hits & (valid if rows is None else valid[rows])).flatten(1).sum(1) / \
            (labelled if rows is None else labelled[rows])
        return -share if targeted else share

    with torch.no_grad():
        if start is None:
            column = torch.arange(width, device=device).view(1, 1, 1, width)
            channel = torch.arange(channels, device=device).view(1, channels, 1, 1)
            bits = hashed(seeds.view(batch, 1, 1, 1), 0, channel * width + column) & 1
            start = (images + eps * (2.0 * bits.to(images.dtype) - 1.0)).clamp(0, 1)
        check_linf_box(start, images, eps)
        logits = model(start)
        margin = MaskedMargin(goal, logits.shape[1], targeted)
        objective, hits = margin(logits)
        current, current_objective = start.clone(), objective
        best, best_logits, best_score, best_objective = start.clone(), logits.clone(), score(hits), objective
        forwards = torch.ones(batch, dtype=torch.long, device=device)
        everyone = torch.arange(batch, device=device)
        streams = torch.arange(2 + channels, device=device) + 1
        lower, upper = (images - eps).clamp(0, 1), (images + eps).clamp(0, 1)
        row_index, col_index = torch.arange(height, device=device), torch.arange(width, device=device)
        for query in range(1, queries):
            active = current_objective > 0  # images with a correct pixel left
            if not bool(active.any()):
                break
            rows = active.nonzero().flatten() if skip_solved else everyone  # the images this query forwards
            side = round(math.sqrt(window_fraction(query, queries, p_init) * height * width))
            side = max(1, min(side, height - 1, width - 1))  # as AutoAttack: at most one less than the image
            if (query - 1) % DRAW_BLOCK == 0:  # the draws of the next DRAW_BLOCK queries in one hash evaluation
                block = torch.arange(query, query + DRAW_BLOCK, device=device).view(1, -1, 1)
                draws = hashed(seeds.view(batch, 1, 1), block, streams.view(1, 1, -1)).cpu()  # (B, Q, 2 + C)
                positions, sign_bits = draws[:, :, :2].to(device), (draws[:, :, 2:] & 1).bool().to(device)
            offset = (query - 1) % DRAW_BLOCK
            everyone_runs = len(rows) == batch
            # each image's window set to a vertex of the ball (x + eps * sign, clipped to [0, 1] = upper or lower),
            # written for all images at once through a window mask
            corner = positions[:, offset] if everyone_runs else positions[rows, offset]  # (R, 2)
            top = (corner[:, :1] % (height - side + 1)).unsqueeze(-1)  # (R, 1, 1)
            left = (corner[:, 1:] % (width - side + 1)).unsqueeze(-1)
            inside_rows = (row_index >= top) & (row_index < top + side)  # (R, 1, H)
            inside_cols = (col_index >= left) & (col_index < left + side)  # (R, 1, W)
            window = (inside_rows.unsqueeze(-1) & inside_cols.unsqueeze(-2))  # (R, 1, H, W)
            upper_rows, lower_rows, current_rows = (upper, lower, current) if everyone_runs else \
                (upper[rows], lower[rows], current[rows])  # no copies while every image is still attacked
            signs = sign_bits[:, offset] if everyone_runs else sign_bits[rows, offset]
            vertex = torch.where(signs.view(-1, channels, 1, 1), upper_rows, lower_rows)
            candidate = torch.where(window, vertex, current_rows)
            logits = model(candidate)
            tick()
            objective, hits = margin(logits, None if everyone_runs else rows)
            forwards += active if skip_solved else 1
            accept = active[rows] & (objective < current_objective[rows])  # per row of ``rows``
            if not bool(accept.any()):
                continue
            accepted = rows[accept]
            current.index_copy_(0, accepted, candidate[accept])
            current_objective = current_objective.index_put((accepted,), objective[accept])
            candidate_score = score(hits, None if everyone_runs else rows)
            better = accept & (candidate_score < best_score[rows])
            if not bool(better.any()):
                continue
            improved = rows[better]
            best.index_copy_(0, improved, candidate[better])
            best_logits.index_copy_(0, improved, logits[better])
            best_score = best_score.index_put((improved,), candidate_score[better])
            best_objective = best_objective.index_put((improved,), objective[better])
        best_predictions = predicted_classes(best_logits)
    check_linf_box(best, images, eps)
    extras = {"objective": best_objective, "forwards": forwards.cpu(), "backwards": torch.zeros(batch, dtype=torch.long)}
    if targeted:
        extras["target_agreement"] = pixel_accuracy(best_predictions, target_labels)
    return AttackResult(best, best_predictions, 100 * pixel_accuracy(best_predictions, labels), extras)


def sea_square(model, images: torch.Tensor, labels: torch.Tensor, *, eps: float,
               losses: tuple[str, ...] = SEA_LOSSES, iterations: int = 300, schedule: str = "red",
               skip_solved: bool = True, loss_schedule: str = "stage", queries: int = 5000,
               generator: torch.Generator | None = None, image_seeds: list[int] | None = None) -> AttackResult:
    """SEA, then Square started from SEA's worst case: a black-box check of the white-box result.

    The worst case is per image the lower-accuracy result of the two. Components: SEA's per-loss runs, ``sea``
    (SEA's worst case) and ``square``; extras 'square_improved' (bool per image: Square lowered the accuracy SEA
    reached, which a reliable white-box evaluation should rarely allow) and the summed 'forwards' / 'backwards'.
    """
    seeds = image_seeds if image_seeds is not None else draw_image_seeds(images.shape[0], generator)
    white = sea(model, images, labels, eps=eps, losses=losses, iterations=iterations, schedule=schedule,
                skip_solved=skip_solved, loss_schedule=loss_schedule, image_seeds=seeds)
    black = square(model, images, labels, eps=eps, queries=queries, image_seeds=[mix_seed(s, 7) for s in seeds],
                   start=white.adv_images)
    improved = black.accuracy < white.accuracy
    view = improved.view(-1, 1, 1, 1)
    extras = {"square_improved": improved.cpu(), "late_improvement": white.extras["late_improvement"],
              **{key: white.extras[key] + black.extras[key] for key in ("forwards", "backwards")}}
    components = {**white.components, "sea": AttackResult(white.adv_images, white.predictions, white.accuracy),
                  "square": black}
    return AttackResult(torch.where(view, black.adv_images, white.adv_images),
                        torch.where(view[..., 0], black.predictions, white.predictions),
                        torch.where(improved, black.accuracy, white.accuracy), extras, components)
