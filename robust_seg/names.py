"""Names shared by the attacks, the evaluation and the reports, without importing any: SEA's losses, readable
labels and the keys of ``results.json``.

A report or table (``robust_seg.reporting``) reads these without loading torch; the attacks use the same tuples.
"""
from __future__ import annotations

SEA_LOSSES = ("mask_ce", "bal_ce", "js", "mask_sph")
"""The four losses of SEA (SEA paper Sec. 2.4)."""

ALL_LOSSES = ("ce", "bal_ce", "cossim_ce", "js", "mask_ce", "mask_sph")
"""All six losses of Sec. 2.2 (Table 8's 'all losses')."""

COMPONENT_LABELS = {"ce": "CE", "bal_ce": "Bal-CE", "cossim_ce": "CosSim-CE", "js": "JS", "mask_ce": "Mask-CE",
                    "mask_sph": "Mask-Sph", "sea": "SEA", "square": "Square"}
"""Readable names of losses and of an ensemble's components."""


def loss_label(loss: str) -> str:
    """A loss as the SEA paper's tables write it, e.g. ``L_Mask-CE``."""
    return f"L_{COMPONENT_LABELS.get(loss, loss)}"


WORST = "worst_case"
"""The results key of the image-wise worst case over an attack's components (SEA paper Sec. 2.4)."""

MINIMAL_NORM_KEY = "minimal_norm"
"""The results key of a minimal-norm attack's one run (its radii only serve the robust-at-eps curve)."""
