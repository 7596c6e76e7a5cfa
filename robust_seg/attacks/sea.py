"""SEA, the Segmentation Ensemble Attack (SEA paper Sec. 2.4, App. C.2).

One APGD run (default 300 iterations, red-eps) per loss, by default Mask-CE, Bal-CE, JS,
Mask-Sph.; the result is, per image, the run with the lowest pixel accuracy (Sec. 2.1:
"we select the perturbation that gives the lowest average accuracy for each image"); ties
keep the earlier loss in ``losses``. ``losses=ALL_LOSSES`` is the six-loss variant of Table 8.

Skipping: an image whose worst-case accuracy is already 0 after some runs cannot be
improved, so later runs attack only the unsolved images. This never changes the result:
each image's random starts come from its own seed, derived from (base seed, loss index,
image index), so an image's run is the same whichever images share its batch (given a model
that treats batch elements independently, e.g. in eval mode), and an image at 0 keeps the
earlier loss as worst case under the tie rule either way.

``components[loss]`` is the AttackResult of that loss's run. For an image skipped in that
run, the entry holds the worst case found before the run (accuracy 0), extras['skipped'] is
True, extras['loss'] is NaN and no forward/backward pass is counted.
Top-level extras: 'worst_component' (index into ``losses`` of the selected run per image),
'forwards' / 'backwards' (passes per image summed over runs).
"""
from __future__ import annotations

import torch

from robust_seg.attacks.apgd import apgd
from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.pgd import draw_image_seeds, mix_seed
from robust_seg.attacks.result import AttackResult
from robust_seg.names import ALL_LOSSES, SEA_LOSSES  # noqa: F401  (ALL_LOSSES: Table 8's six-loss variant)


_COUNTERS = ("forwards", "backwards")


def _component_for_batch(run: AttackResult, ran: torch.Tensor, worst_so_far: AttackResult | None, batch: int) -> AttackResult:
    """Scatter a run on the images ``ran`` (indices) into a full-batch result, skipped images from ``worst_so_far``."""
    if worst_so_far is None or ran.numel() == batch:
        skipped = torch.zeros(batch, dtype=torch.bool)
        return AttackResult(run.adv_images, run.predictions, run.accuracy, {**run.extras, "skipped": skipped})

    def scatter(fallback: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        full = fallback.clone()
        full[ran.to(full.device)] = values.to(full.dtype)
        return full

    skipped = torch.ones(batch, dtype=torch.bool)
    skipped[ran] = False
    extras = {"skipped": skipped}
    for key, value in run.extras.items():
        if key in _COUNTERS:
            extras[key] = scatter(torch.zeros(batch, dtype=value.dtype, device=value.device), value)
        elif torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == ran.numel():
            fill = False if value.dtype == torch.bool else float("nan")  # skipped: no late improvement, NaN loss
            extras[key] = scatter(torch.full((batch,), fill, dtype=value.dtype, device=value.device), value)
    return AttackResult(
        scatter(worst_so_far.adv_images, run.adv_images),
        scatter(worst_so_far.predictions, run.predictions),
        scatter(worst_so_far.accuracy, run.accuracy),
        extras,
    )


def sea(
    model,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    losses: tuple[str, ...] = SEA_LOSSES,
    iterations: int = 300,
    schedule: str = "red",
    skip_solved: bool = True,
    generator: torch.Generator | None = None,
    loss_schedule: str = "stage",
    image_seeds: list[int] | None = None,
) -> AttackResult:
    """Run SEA on a batch; see the module docstring. ``generator`` draws the base seed; ``loss_schedule`` as in
    :func:`robust_seg.attacks.apgd.apgd` (Bal-CE's t restarts at every red-eps stage by default).
    ``image_seeds``: one int per image (e.g. from its index in the dataset, as the evaluation driver passes);
    image i's random starts then depend only on it, not on its position in the batch or on the batch."""
    if len(set(losses)) != len(losses) or not losses:
        raise ValueError(f"SEA needs distinct losses, got {losses}")
    images = images.detach()
    batch = images.shape[0]
    base_seed = draw_image_seeds(1, generator)[0] if image_seeds is None else None
    worst: AttackResult | None = None
    worst_component = torch.zeros(batch, dtype=torch.int64)
    components: dict[str, AttackResult] = {}
    for index, name in enumerate(losses):
        unsolved = torch.ones(batch, dtype=torch.bool) if worst is None or not skip_solved else worst.accuracy.cpu() > 0
        ran = unsolved.nonzero().squeeze(1)
        seeds = [mix_seed(base_seed, index, image) if image_seeds is None else mix_seed(image_seeds[image], index)
                 for image in ran.tolist()]
        if ran.numel() == 0:
            component = AttackResult(
                worst.adv_images, worst.predictions, worst.accuracy,
                {"skipped": torch.ones(batch, dtype=torch.bool), "loss": torch.full((batch,), float("nan"), dtype=images.dtype),
                 "late_improvement": torch.zeros(batch, dtype=torch.bool),
                 **{key: torch.zeros(batch, dtype=torch.int64) for key in _COUNTERS}},
            )
        else:
            device_index = ran.to(images.device)
            run = apgd(
                model, images[device_index], labels[device_index],
                eps=eps, loss=name, iterations=iterations, schedule=schedule, image_seeds=seeds,
                loss_schedule=loss_schedule,
            )
            component = _component_for_batch(run, ran, worst, batch)
        components[name] = component
        if worst is None:
            worst = AttackResult(component.adv_images, component.predictions, component.accuracy)
        else:
            better = component.accuracy < worst.accuracy
            worst_component = torch.where(better.cpu(), index, worst_component)
            view = better.reshape(-1, 1, 1, 1)
            worst = AttackResult(
                torch.where(view, component.adv_images, worst.adv_images),
                torch.where(view[..., 0], component.predictions, worst.predictions),
                torch.where(better, component.accuracy, worst.accuracy),
            )
    check_linf_box(worst.adv_images, images, eps)
    extras = {"worst_component": worst_component, "losses": tuple(losses),
              "late_improvement": torch.stack([component.extras["late_improvement"].cpu() for component in
                                               components.values()]).any(0)}
    for key in _COUNTERS:
        extras[key] = sum(component.extras[key].cpu() for component in components.values())
    return AttackResult(worst.adv_images, worst.predictions, worst.accuracy, extras, components)
