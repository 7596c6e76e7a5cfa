"""What made a run's numbers: the provenance record of ``results.json`` and the fingerprint that resume checks.

The provenance names the model weights (location and sha256 of the file actually loaded, or ``embedded`` /
``random``), the data (name, root, split, image count), the attack (its resolved config and radii), seeds, batch
size, the command-line overrides and the software (project version and commit, torch, mmseg). Table builders
read their labels from it, never from files a later command could rewrite.

The fingerprint is every resolved config value except those in :data:`HARMLESS_KEYS` (they cannot change a
result), plus facts the config does not show (the weights' sha256, the image count). ``resume=true`` continues a
run only when the fingerprints are equal; otherwise one line names each differing key with its old and new value.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from robust_seg.errors import ConfigError

from robust_seg.names import ROOT

HARMLESS_KEYS = (
    "logger", "runtime.threads", "runtime.device", "runtime.num_workers", "runtime.processes", "resume", "run_name",
    "note", "attack.note", "figure_images", "export_path", "model.random_weights", "model.checkpoint_sha256",
    "progress",
)
"""Config keys (and subtrees) that do not change what is evaluated or trained: they may differ when a run is
resumed. (A thread count or device can change the last bits of floating-point sums, as any rerun on other
hardware would; bit-for-bit equality with an uninterrupted run holds when they are kept.)"""




def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are values."""
    if not isinstance(tree, Mapping) or (prefix and not tree):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def is_harmless(key: str) -> bool:
    return any(key == harmless or key.startswith(harmless + ".") for harmless in HARMLESS_KEYS)


def fingerprint(config: Mapping, **facts: Any) -> dict[str, Any]:
    """The result-changing part of a resolved config, flattened, plus ``facts`` (e.g. ``weights_sha256``)."""
    flat = {key: value for key, value in flatten(config).items() if not is_harmless(key)}
    flat.update(facts)
    return json.loads(json.dumps(flat, default=str))  # plain JSON values: comparable after a round trip


def fingerprint_differences(old: Mapping, new: Mapping) -> list[str]:
    """``key: old -> new`` for every differing key, the shallowest keys first (``model.name`` before the
    ``model.mmseg.*`` details that follow from it)."""
    missing = "<unset>"
    keys = sorted(set(old) | set(new), key=lambda key: (key.count("."), key))
    return [f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
            for key in keys if old.get(key, missing) != new.get(key, missing)]


def check_resume(old: Mapping, new: Mapping, run_dir: Path, what: str) -> None:
    """Refuse (one line naming every differing key, old -> new) to resume a run with other settings."""
    differences = fingerprint_differences(old, new)
    if differences:
        shown = "; ".join(differences[:8]) + (f"; and {len(differences) - 8} more" if len(differences) > 8 else "")
        raise ConfigError(f"resume=true but {run_dir} was {what} with other settings ({shown}): resume with the "
                          "original values, or give another run_name")


def git_commit() -> str | None:
    """The project's commit (with ``-dirty`` when the work tree has changes), or None outside a git checkout."""
    if not (ROOT / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def software() -> dict[str, Any]:
    import torch

    from robust_seg import __version__

    versions = {"robust_seg": __version__, "commit": git_commit(), "python": platform.python_version(),
                "torch": torch.__version__}
    for package in ("mmseg", "mmengine"):
        module = sys.modules.get(package)
        versions[package] = getattr(module, "__version__", None) if module else None
    return versions


WRITTEN_AS: dict[str, str] = {}
"""Overrides the command line rewrote before Hydra read them (``robust_seg.run.cli.attack_options_as_written``)
-> as the user wrote them: the record shows the user's command."""


def command_overrides() -> list[str]:
    """The command line's Hydra overrides as the user wrote them (empty outside a Hydra entry point)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [WRITTEN_AS.get(override, override) for override in HydraConfig.get().overrides.task]


def weights_label(weights: Mapping) -> str:
    """One phrase naming the weights: ``random (untrained)``, ``embedded <file>`` or the checkpoint location."""
    if weights.get("source") == "random":
        return "RANDOM WEIGHTS (untrained model)"
    if weights.get("source") == "factory":
        return "as built by its factory (model.target)"
    if weights.get("source") == "module":
        return "a module given through the Python API"
    if weights.get("source") == "backbone":
        backbone = weights.get("backbone") or {}
        return f"backbone {backbone.get('location')} + RANDOM decoder"
    digest = (weights.get("sha256") or "")[:12]
    name = Path(str(weights.get("checkpoint"))).name if weights.get("source") == "embedded" else weights.get("checkpoint")
    return f"{'embedded ' if weights.get('source') == 'embedded' else ''}{name} (sha256 {digest})"
