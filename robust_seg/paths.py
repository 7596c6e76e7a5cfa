"""Where the project's own files lie: the repository, the Hydra configs, the shipped assets and the zoo entries.

Absolute paths, so that the entry points work as ``python -m`` and as console scripts from any directory.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository (a git checkout: the provenance records its commit)."""
CONFIGS = ROOT / "configs"
"""The Hydra config directory."""
ASSETS = ROOT / "robust_seg" / "assets"
"""Files shipped with the package: the embedded model's weights, the synthetic target map."""
ZOO_DIR = CONFIGS / "model" / "zoo"
"""The zoo: one model config per released checkpoint (``robust_seg.models.zoo``)."""
