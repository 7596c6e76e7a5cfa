"""Names and places shared by the whole package, without importing any of it: SEA's losses, readable labels, the
keys of ``results.json``, and where the project's own files lie (the repository, the Hydra configs, the shipped
assets and the zoo entries).

A report or table (``robust_seg.reporting``) reads these without loading torch; the attacks use the same tuples.
The paths are absolute, so that the entry points work as ``python -m`` and as console scripts from any directory.
"""
from __future__ import annotations

from pathlib import Path

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

ROOT = Path(__file__).resolve().parents[1]
"""The repository (a git checkout: the provenance records its commit)."""
CONFIGS = ROOT / "configs"
"""The Hydra config directory."""
ASSETS = ROOT / "robust_seg" / "assets"
"""Files shipped with the package: the embedded model's weights, the synthetic target map."""
ZOO_DIR = CONFIGS / "model" / "zoo"
"""The zoo: one model config per released checkpoint (``robust_seg.models.zoo``)."""
