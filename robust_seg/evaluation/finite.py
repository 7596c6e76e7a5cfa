"""Finite logits on every batch: on the clean images (broken weights or inputs), and on the attacked ones (a model
that breaks off the clean point). Either is an error naming the batch (and the radius and attack): the arg-max of
NaN logits is not a prediction, and scoring it would report a number that means nothing."""
from __future__ import annotations

import torch

from robust_seg.errors import NonFiniteLogits
from robust_seg.names import WORST
from robust_seg.run.provenance import weights_label


def check_finite_logits(model, images: torch.Tensor, names, batch_index: int) -> None:
    """Refuse a model whose logits on the clean batch hold NaN or inf (e.g. broken weights or inputs)."""
    with torch.no_grad():
        logits = model(images)
    finite = torch.isfinite(logits).flatten(1).all(1)
    if not bool(finite.all()):
        bad = [str(names[i]) for i in torch.nonzero(~finite).flatten().tolist()]
        raise NonFiniteLogits(f"the model's logits are NaN or infinite on batch {batch_index} (images "
                              f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}): check the weights "
                              f"({weights_label(model.weights)}) and the data")


def check_finite_attacked(model, outcomes: dict, names, batch_index: int, radius: str, attack: str) -> None:
    """Refuse a model whose logits are NaN or inf on the attacked images (finite on the clean ones): its
    predictions there are undefined, and scoring their arg-max would report a number that means nothing. One
    forward per distinct set of attacked images (each component's; the worst case is made of them)."""
    checked = [o for name, o in outcomes.items() if name != WORST] or list(outcomes.values())
    bad: set[int] = set()
    with torch.no_grad():
        for outcome in {id(o.adv_images): o for o in checked}.values():
            logits = model(outcome.adv_images)
            bad |= set(torch.nonzero(~torch.isfinite(logits).flatten(1).all(1)).flatten().tolist())
    if bad:
        shown = [str(names[i]) for i in sorted(bad)]
        raise NonFiniteLogits(f"the model's logits are NaN or infinite on {len(bad)} of {len(names)} attacked images "
                              f"of batch {batch_index} ({', '.join(shown[:4])}{' ...' if len(shown) > 4 else ''}) "
                              f"under {attack} at radius {radius}, although finite on the clean images: the model "
                              "breaks off the clean point (numerics of its layers); finished batches are kept")
